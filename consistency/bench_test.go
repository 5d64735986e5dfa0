package consistency_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// provisionPerOp is how many accounts one iteration of BenchmarkProvision
// adds and modifies.
const provisionPerOp = 4096

// BenchmarkProvision measures an Add then a Modify through the engine on
// memconn and memstore, against the same connector calls and store writes
// made by hand ("bare": create the shadow with its add in flight, add, update;
// get, modify, update), in the same run and interleaved so that both see the
// same heap. engine/bare is the engine's overhead factor.
func BenchmarkProvision(b *testing.B) {
	ctx := context.Background()
	clk := connector.NewFakeClock(t0)
	engConn := memconn.New(memconn.Options{Clock: clk})
	eng, err := consistency.New(consistency.Config{Clock: clk, Store: memstore.New(memstore.Options{Clock: clk}),
		Resources: []consistency.Resource{{ID: resID, Connector: engConn}}})
	if err != nil {
		b.Fatal(err)
	}
	bareConn := memconn.New(memconn.Options{Clock: clk})
	bareStore := memstore.New(memstore.Options{Clock: clk})

	// Each iteration provisions provisionPerOp accounts, so that one
	// iteration (make bench's -benchtime=1x) is a measurement too.
	names := make([]string, b.N*provisionPerOp)
	for i := range names {
		names[i] = fmt.Sprintf("user%08d", i)
	}
	newAttrs := func(name string) connector.Attributes {
		return connector.Attributes{"uid": {name}, "mail": {name + "@example.com"}, "cn": {"User " + name}}
	}
	change := []connector.AttributeDelta{{Op: connector.Replace, Name: "title", Values: []string{"engineer"}}}

	// Time batches of each side in turn; the ratio of the median batches
	// is robust against the other processes of a busy machine, which a
	// ratio of totals is not.
	const batch = 32
	var engine, bare []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for lo := 0; lo < len(names); lo += batch {
		hi := min(lo+batch, len(names))
		start := time.Now()
		for _, name := range names[lo:hi] {
			out, err := eng.Add(ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: name, Attributes: newAttrs(name)})
			if err != nil || out.Status != consistency.Done {
				b.Fatalf("engine add: %v %v", out.Status, err)
			}
			if out, err := eng.Modify(ctx, out.Shadow.ID, change); err != nil || out.Status != consistency.Done {
				b.Fatalf("engine modify: %v %v", out.Status, err)
			}
		}
		engine = append(engine, time.Since(start)/time.Duration(hi-lo))

		start = time.Now()
		for _, name := range names[lo:hi] {
			bareProvision(b, ctx, bareConn, bareStore, clk.Now(), name, newAttrs(name), change)
		}
		bare = append(bare, time.Since(start)/time.Duration(hi-lo))
	}
	b.StopTimer()
	e, r := median(engine), median(bare)
	b.ReportMetric(float64(e)/float64(r), "engine/bare")
	b.ReportMetric(float64(e.Nanoseconds()), "engine-ns/account")
	b.ReportMetric(float64(r.Nanoseconds()), "bare-ns/account")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// bareProvision is what the engine does for an add and a modify when all
// goes well, written by hand: the same store writes (write-ahead, outcome,
// NextDue for the retention clean-up) and connector calls, nothing else.
func bareProvision(b *testing.B, ctx context.Context, conn *memconn.Conn, store shadow.Store, now time.Time,
	name string, attrs connector.Attributes, change []connector.AttributeDelta) {
	sh := &shadow.Shadow{ResourceID: resID, Class: account, Name: name, Origin: shadow.OriginAssigned,
		Pending: []shadow.PendingOperation{{ID: 1, Type: shadow.OpRetry, Status: shadow.StatusExecuting,
			Result: shadow.ResultInProgress, Attempt: 1, RequestedAt: now, LastAttemptAt: now,
			Delta: connector.Delta{Type: connector.DeltaAdd, Attributes: attrs}}},
		NextDue: now.Add(consistency.OperationRetryPeriodDefault)} // due if the process dies mid-call
	if err := store.Create(ctx, sh); err != nil {
		b.Fatal(err)
	}
	res, err := conn.Add(ctx, account, attrs)
	if err != nil {
		b.Fatal(err)
	}
	sh.UID, sh.Exists, sh.Attributes = res.ID.UID, true, attrs
	op := &sh.Pending[0]
	op.Status, op.Result, op.CompletedAt = shadow.StatusCompleted, shadow.ResultSuccess, now
	sh.NextDue = now.Add(consistency.PendingOperationRetentionPeriodDefault) // retention clean-up
	if err := store.Update(ctx, sh); err != nil {
		b.Fatal(err)
	}

	sh, err = store.Get(ctx, sh.ID)
	if err != nil {
		b.Fatal(err)
	}
	sh.Pending = append(sh.Pending, shadow.PendingOperation{ID: 2, Type: shadow.OpRetry, Status: shadow.StatusCompleted,
		Result: shadow.ResultSuccess, Attempt: 1, RequestedAt: now, LastAttemptAt: now, CompletedAt: now,
		Delta: connector.Delta{Type: connector.DeltaModify, Changes: change}})
	if _, err := conn.Modify(ctx, account, sh.Identifiers(), change); err != nil {
		b.Fatal(err)
	}
	sh.Attributes = connector.ApplyChanges(sh.Attributes, change)
	if err := store.Update(ctx, sh); err != nil {
		b.Fatal(err)
	}
}
