//go:build race

package model_test

// raceEnabled is true under the race detector, which slows the pure-Go
// SQLite about twentyfold: the SQL stores then run fewer seeds.
const raceEnabled = true
