// Package bench holds the named benchmarks of umbra's performance targets
// (see the README's "Performance" section): live sync into every store and
// from slapd, refresh scaling, retry drain, propagation, a refresh shared by
// several processes, and the memory store's footprint.
//
// Every benchmark reports its figures with testing.B.ReportMetric as ratios
// against a bare baseline doing the same essential work in the same run, so
// that a noisy machine does not decide the result. Benchmarks that need
// PostgreSQL or slapd get them from internal/testsvc: they skip without the
// services, and fail when UMBRA_FULL=1 asks for the full suite.
//
// Run them with
//
//	UMBRA_FULL=1 go test -run='^$' -bench=. -benchtime=1x ./internal/bench/
//
// The package has no API; it exists so that the benchmarks are found in one
// place.
package bench
