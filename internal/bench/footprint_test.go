package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// footprintShadow returns the i-th shadow of the footprint benchmark: 10
// attributes of 3 values, identifiers of realistic length, and one
// unfinished retry of a modify. raw is its attribute bytes: the names and
// values of the attribute cache and of the pending modify.
func footprintShadow(i int, now time.Time) (sh *shadow.Shadow, raw int) {
	attrs := make(connector.Attributes, 10)
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
	change := connector.AttributeDelta{Op: connector.Replace, Name: "attribute00", Values: []string{fmt.Sprintf("changed-%07d", i)}}
	raw += len(change.Name) + len(change.Values[0])
	return &shadow.Shadow{
		ResourceID: fmt.Sprintf("resource-%d", i%3),
		Class:      "inetOrgPerson",
		Kind:       "account",
		Intent:     "default",
		UID:        fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
		Name:       fmt.Sprintf("uid=user%07d,ou=people,dc=example,dc=org", i),
		Exists:     true,
		Origin:     shadow.OriginAssigned,
		Attributes: attrs,
		NextDue:    now.Add(30 * time.Minute),
		Pending: []shadow.PendingOperation{{
			ID:                1,
			Delta:             connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{change}},
			Type:              shadow.OpRetry,
			Status:            shadow.StatusPendingExecution,
			Result:            shadow.ResultInProgress,
			Attempt:           1,
			RequestedAt:       now,
			LastAttemptAt:     now,
			NextAttemptAt:     now.Add(30 * time.Minute),
			LastError:         "connection refused",
			LastErrorCategory: connector.CategoryNotSent,
		}},
	}, raw
}

// heapAlloc returns the live heap after two collections.
func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemstoreFootprint: the heap a memstore holds for 100,000
// shadows of 10 attributes × 3 values with one pending operation each,
// over the raw attribute bytes it was given (bytes/payload). Each shadow is
// built just before it is stored and is garbage after (the store keeps its
// own copy), so the heap's growth is what the store holds.
func BenchmarkMemstoreFootprint(b *testing.B) {
	n := scaled(100_000)
	ctx := context.Background()
	now := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	var ratio, perShadow float64
	for i := 0; i < b.N; i++ {
		before := heapAlloc()
		st := memstore.New(memstore.Options{Clock: connector.NewFakeClock(now)})
		raw := 0
		for j := range n {
			sh, r := footprintShadow(j, now)
			raw += r
			if err := st.Create(ctx, sh); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		after := heapAlloc()
		if got, err := st.Count(ctx, shadow.Query{Unfinished: true}); err != nil || got != n {
			b.Fatalf("store holds %d shadows with pending work, want %d: %v", got, n, err)
		}
		heap := float64(after) - float64(before)
		ratio = heap / float64(raw)
		perShadow = heap / float64(n)
		runtime.KeepAlive(st)
		b.StartTimer()
	}
	b.ReportMetric(ratio, "bytes/payload")
	b.ReportMetric(perShadow, "B/shadow")
}
