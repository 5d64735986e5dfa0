package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// BenchmarkPropagation: 10,000 shadows each hold 10 grouped modifies queued
// by operation grouping; one propagation run executes them. calls/shadow is
// connector modifies per shadow (1.0: every shadow's operations merged into
// one call); shadows/s the run's rate; engine/bare compares it with a hand
// loop making the same merged call and store update per shadow.
func BenchmarkPropagation(b *testing.B) {
	var (
		n = scaled(10_000)
	)
	const (
		ops      = 10
		interval = time.Minute
	)
	ctx := context.Background()
	clk := connector.NewFakeClock(t0)
	conn := memconn.New(memconn.Options{Clock: clk})
	st := memstore.New(memstore.Options{Clock: clk})
	set := consistency.DefaultSettings()
	set.OperationGroupingInterval = interval
	set.PendingOperationRetentionPeriod = 0
	eng, err := consistency.New(consistency.Config{Clock: clk, Store: st,
		Resources: []consistency.Resource{{ID: resID, Connector: conn, Settings: &set}}})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i := range n {
		attrs := userAttrs(i)
		id, err := conn.Put(account, attrs)
		if err != nil {
			b.Fatal(err)
		}
		sh := &shadow.Shadow{ResourceID: resID, Class: account, UID: id.UID, Name: id.Name,
			Attributes: attrs, Exists: true, Origin: shadow.OriginAssigned}
		if err := st.Create(ctx, sh); err != nil {
			b.Fatal(err)
		}
		ids[i] = sh.ID
	}
	// The bare side: the same objects on a resource of their own, their
	// shadows in a store of their own.
	bareConn := memconn.New(memconn.Options{Clock: clk})
	bareStore := memstore.New(memstore.Options{Clock: clk})
	bareIDs := make([]string, n)
	for i := range n {
		attrs := userAttrs(i)
		id, err := bareConn.Put(account, attrs)
		if err != nil {
			b.Fatal(err)
		}
		sh := &shadow.Shadow{ResourceID: resID, Class: account, UID: id.UID, Name: id.Name,
			Attributes: attrs, Exists: true, Origin: shadow.OriginAssigned}
		if err := bareStore.Create(ctx, sh); err != nil {
			b.Fatal(err)
		}
		bareIDs[i] = sh.ID
	}
	// groupChanges returns the 10 modifies of round r: each replaces one
	// attribute and adds a value to another.
	groupChanges := func(r, k int) []connector.AttributeDelta {
		return []connector.AttributeDelta{
			{Op: connector.Replace, Name: "description", Values: []string{fmt.Sprintf("round %d change %d", r, k)}},
			{Op: connector.AddValues, Name: "memberOf", Values: []string{fmt.Sprintf("cn=group%d,ou=groups", k)}},
		}
	}

	var engine, bare time.Duration
	var calls int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for _, id := range ids {
			for k := range ops {
				if out, err := eng.Modify(ctx, id, groupChanges(i, k)); err != nil || out.Status != consistency.Queued {
					b.Fatalf("queue modify: %v %v", out.Status, err)
				}
			}
		}
		clk.Advance(interval + time.Second)
		conn.ResetCalls()
		task, err := propagation.New(propagation.Config{Engine: eng})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var res propagation.Result
		e := timed(func() { res, err = task.Run(ctx) })
		b.StopTimer()
		if err != nil || res.Total.Propagated != n || res.Total.Operations != n*ops || res.ErrorCount != 0 {
			b.Fatalf("propagation: %+v, %d errors: %v %v", res.Total, res.ErrorCount, err, res.Err())
		}
		calls += conn.Calls(memconn.CallModify)
		d := timed(func() { bareMergedModify(b, ctx, bareConn, bareStore, bareIDs, i, groupChanges) })
		if i == 0 || e < engine {
			engine = e
		}
		if i == 0 || d < bare {
			bare = d
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(calls)/float64(n*b.N), "calls/shadow")
	b.ReportMetric(rate(n, engine), "shadows/s")
	b.ReportMetric(float64(engine)/float64(bare), "engine/bare")
}

// bareMergedModify does by hand what propagation does for each shadow:
// read it, merge the round's changes into one modify, call the resource
// once, and store the result.
func bareMergedModify(b *testing.B, ctx context.Context, conn *memconn.Conn, st shadow.Store, ids []string, r int, changes func(r, k int) []connector.AttributeDelta) {
	deltas := make([]connector.Delta, 10)
	for _, id := range ids {
		sh, err := st.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		for k := range deltas {
			deltas[k] = connector.Delta{Type: connector.DeltaModify, Changes: changes(r, k)}
		}
		merged, _, err := connector.Merge(deltas)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Modify(ctx, account, sh.Identifiers(), merged.Changes); err != nil {
			b.Fatal(err)
		}
		sh.Attributes = connector.ApplyChanges(sh.Attributes, merged.Changes)
		if err := st.Update(ctx, sh); err != nil {
			b.Fatal(err)
		}
	}
}
