package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// BenchSize is the number of shadows Bench stores before it measures the
// reads and the due query; BenchDue of them are due.
const (
	BenchSize = 10000
	BenchDue  = 100
)

// Bench runs the shared store benchmarks against the stores newStore makes,
// so that every store reports the same numbers (hashicorp/raft's bench
// package is the model):
//
//	func BenchmarkStore(b *testing.B) {
//		storetest.Bench(b, func(tb testing.TB, clk connector.Clock) shadow.Store { ... })
//	}
//
// Sub-benchmarks: Create, Get, Update, DueQuery (the refresh query over
// BenchSize shadows of which BenchDue are due), Page (100 shadows by
// keyset) and, when the store is a shadow.Claimer, ClaimRelease. Each
// reports its rate with b.ReportMetric.
func Bench(b *testing.B, newStore func(tb testing.TB, clk connector.Clock) shadow.Store) {
	b.Run("Create", func(b *testing.B) {
		s := newStore(b, connector.NewFakeClock(Start))
		i := 0
		for b.Loop() {
			if err := s.Create(b.Context(), benchShadow(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		report(b, "creates/s")
	})
	b.Run("Get", func(b *testing.B) {
		s := benchFixture(b, newStore)
		i := 0
		for b.Loop() {
			if _, err := s.Get(b.Context(), benchID(i%BenchSize)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		report(b, "gets/s")
	})
	b.Run("Update", func(b *testing.B) {
		s := benchFixture(b, newStore)
		versions := make([]int64, BenchSize)
		for i := range versions {
			versions[i] = 1
		}
		i := 0
		for b.Loop() {
			k := i % BenchSize
			sh := benchShadow(k)
			sh.Version = versions[k]
			sh.Attributes["description"] = []string{fmt.Sprint(i)}
			if err := s.Update(b.Context(), sh); err != nil {
				b.Fatal(err)
			}
			versions[k] = sh.Version
			i++
		}
		report(b, "updates/s")
	})
	b.Run("DueQuery", func(b *testing.B) {
		s := benchFixture(b, newStore)
		q := shadow.Query{DueBy: Start, Unfinished: true}
		for b.Loop() {
			got, err := s.List(b.Context(), q)
			if err != nil || len(got) != BenchDue {
				b.Fatalf("due query returned %d shadows, %v; want %d", len(got), err, BenchDue)
			}
		}
		report(b, "queries/s")
	})
	b.Run("Page", func(b *testing.B) {
		s := benchFixture(b, newStore)
		q := shadow.Query{ResourceID: "bench", Limit: 100}
		for b.Loop() {
			got, err := s.List(b.Context(), q)
			if err != nil {
				b.Fatal(err)
			}
			if len(got) < q.Limit {
				q.After = ""
			} else {
				q.After = got[len(got)-1].ID
			}
		}
		report(b, "pages/s")
	})
	b.Run("ClaimRelease", func(b *testing.B) {
		s := benchFixture(b, newStore)
		c, ok := s.(shadow.Claimer)
		if !ok {
			b.Skipf("%T is not a shadow.Claimer", s)
		}
		q := shadow.Query{DueBy: Start, Unfinished: true}
		for b.Loop() {
			got, err := c.Claim(b.Context(), q, "bench", time.Minute, 10)
			if err != nil || len(got) != 10 {
				b.Fatalf("Claim: %d shadows, %v", len(got), err)
			}
			if err := c.Release(b.Context(), "bench", ids(got)...); err != nil {
				b.Fatal(err)
			}
		}
		report(b, "claims/s")
	})
}

func report(b *testing.B, unit string) {
	if e := b.Elapsed(); e > 0 {
		b.ReportMetric(float64(b.N)/e.Seconds(), unit)
	}
}

func benchID(i int) string { return fmt.Sprintf("bench-%07d", i) }

// benchShadow returns the i-th benchmark shadow: ten attributes; every
// BenchSize/BenchDue-th one has an unfinished retry due at Start.
func benchShadow(i int) *shadow.Shadow {
	sh := newShadow(benchID(i), "bench", "inetOrgPerson", fmt.Sprintf("uid-%07d", i))
	for a := range 10 {
		sh.Attributes[fmt.Sprintf("attr%d", a)] = []string{fmt.Sprintf("value %d of %d", a, i), "second value"}
	}
	if i%(BenchSize/BenchDue) == 0 {
		sh.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaModify, Start.Add(-time.Hour), false)}
		sh.NextDue = Start
	}
	return sh
}

// benchFixture returns a store holding BenchSize benchmark shadows, made
// before the timer starts.
func benchFixture(b *testing.B, newStore func(tb testing.TB, clk connector.Clock) shadow.Store) shadow.Store {
	b.Helper()
	s := newStore(b, connector.NewFakeClock(Start))
	if ba, ok := s.(shadow.Batcher); ok {
		const batch = 500
		for from := 0; from < BenchSize; from += batch {
			writes := make([]shadow.Write, 0, batch)
			for i := from; i < from+batch && i < BenchSize; i++ {
				writes = append(writes, shadow.Write{Op: shadow.WriteCreate, Shadow: benchShadow(i)})
			}
			if err := ba.Apply(b.Context(), writes); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		for i := range BenchSize {
			if err := s.Create(b.Context(), benchShadow(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	return s
}
