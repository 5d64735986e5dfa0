package memstore_test

import (
	"testing"

	"github.com/umbra-idm/umbra/internal/fuzzgen"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// FuzzStoreRoundTrip: any valid shadow, with any pending operations and
// any bytes in its strings, comes back from the store exactly as it went in
// (go-cmp), through Create, Get, List, Update and Delete.
func FuzzStoreRoundTrip(f *testing.F) {
	for _, s := range fuzzgen.Seeds() {
		f.Add(s)
	}
	st := memstore.New(memstore.Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzgen.CheckRoundTrip(t, st, data, false)
	})
}
