package ldap

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAdd measures adds through the connector (one client, pooled
// connection, server with olcDbNoSync).
func BenchmarkAdd(b *testing.B) {
	c, _, _ := setup(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Add(ctx, personClass, person(fmt.Sprint("bench", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "adds/s")
}

// BenchmarkFetchAccessLog measures reading the access log: 500 creates
// fetched in batches of 100.
func BenchmarkFetchAccessLog(b *testing.B) {
	c, _, _ := setup(b)
	ctx := context.Background()
	start, err := c.LatestToken(ctx, personClass)
	if err != nil {
		b.Fatal(err)
	}
	const n = 500
	for i := range n {
		if _, err := c.Add(ctx, personClass, person(fmt.Sprint("f", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	changes := 0
	for b.Loop() {
		tok := start
		for {
			batch, err := c.FetchChanges(ctx, personClass, tok, 100)
			if err != nil {
				b.Fatal(err)
			}
			changes += len(batch.Changes)
			tok = batch.Token
			if !batch.More {
				break
			}
		}
	}
	if changes != n*b.N {
		b.Fatalf("fetched %d changes, want %d", changes, n*b.N)
	}
	b.ReportMetric(float64(changes)/b.Elapsed().Seconds(), "changes/s")
}
