// Package model holds umbra's randomized model test: the consistency engine,
// the refresh, propagation and live-sync tasks driven together over three
// in-memory resources with random operations, outages and injected faults,
// checked against a simple model of what the final state must be. It also
// holds the bad-input table tests of every engine. The package has no API;
// everything is in its _test.go files.
package model
