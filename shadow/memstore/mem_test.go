package memstore

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// memShadow returns the i-th shadow of the memory measurement: 10
// attributes of 3 values each, with identifiers of realistic length.
func memShadow(i int) (*shadow.Shadow, int) {
	attrs := make(connector.Attributes, 10)
	raw := 0
	for a := range 10 {
		name := fmt.Sprintf("attribute%02d", a)
		vals := make([]string, 3)
		raw += len(name)
		for v := range vals {
			vals[v] = fmt.Sprintf("value-%07d-%02d-%d", i, a, v)
			raw += len(vals[v])
		}
		attrs[name] = vals
	}
	return &shadow.Shadow{
		ResourceID: fmt.Sprintf("resource-%d", i%3),
		Class:      connector.ObjectClass("inetOrgPerson"),
		Kind:       "account",
		Intent:     "default",
		UID:        fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
		Name:       fmt.Sprintf("uid=user%07d,ou=people,dc=example,dc=org", i),
		Exists:     true,
		Origin:     shadow.OriginAssigned,
		Attributes: attrs,
	}, raw
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// measureHeap stores n memShadows and returns the heap the store holds and
// the raw attribute bytes (names and values) it was given.
func measureHeap(n int) (heap uint64, raw int, s *Store) {
	before := heapInUse()
	s = New(Options{})
	for i := range n {
		sh, r := memShadow(i)
		raw += r
		if err := s.Create(context.Background(), sh); err != nil {
			panic(err)
		}
	}
	after := heapInUse()
	return after - before, raw, s
}

// TestMemoryFootprint holds the store to its memory budget: the heap it
// holds for shadows with 10 attributes of 3 values is at most three times
// the raw attribute bytes (names and values) it was given, identifiers,
// indexes and bookkeeping included. It does not run in parallel, so that
// no other test allocates while it measures.
func TestMemoryFootprint(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	heap, raw, s := measureHeap(n)
	ratio := float64(heap) / float64(raw)
	t.Logf("%d shadows: heap %d bytes, raw attribute bytes %d, ratio %.2f (%d bytes a shadow)", n, heap, raw, ratio, heap/uint64(n))
	if ratio > 3 {
		t.Fatalf("heap is %.2f times the raw attribute bytes, want at most 3", ratio)
	}
	if s.Len() != n {
		t.Fatalf("Len() = %d, want %d", s.Len(), n)
	}
	runtime.KeepAlive(s)
}

// BenchmarkFootprint100k reports the heap a store of 100,000 shadows holds,
// per shadow and as a multiple of the raw attribute bytes.
func BenchmarkFootprint100k(b *testing.B) {
	const n = 100000
	for b.Loop() {
		heap, raw, s := measureHeap(n)
		b.ReportMetric(float64(heap)/float64(raw), "heap/raw")
		b.ReportMetric(float64(heap)/n, "heap-B/shadow")
		runtime.KeepAlive(s)
	}
}
