// Package load holds umbra's load test: a PostgreSQL shadow store filled
// with many shadows, a share of them with a retry operation that has fallen
// due, and one refresh run over them while the test samples the heap and the
// resident set. It has no API; the test is in load_test.go.
//
// The normal suite runs a scaled-down size (20,000 shadows, 2,000 of them
// due) with the same assertions. The full size (1,000,000 shadows, 100,000
// due) runs with UMBRA_LOAD=1 or the -long flag, and needs a longer test
// timeout:
//
//	UMBRA_LOAD=1 go test -run TestLoadMillion -timeout 60m -v ./internal/load/
//
// UMBRA_LOAD_SHADOWS and UMBRA_LOAD_PENDING override the two sizes (for
// runs in between); UMBRA_LOAD_HEAPPROFILE=file writes a heap profile
// right after the refresh run, while the run's memory is still reachable
// (go test's -memprofile is written after the test has let go of it). The PostgreSQL server is the one internal/testsvc uses
// (UMBRA_PG_DSN); without it the test skips, unless UMBRA_FULL=1.
package load
