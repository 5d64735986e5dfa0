package livesync_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// benchStream fills a resource with n changes: n/2 creates, then a modify of
// each object.
func benchStream(b *testing.B, n int, precise bool) *memconn.Conn {
	conn := memconn.New(memconn.Options{PreciseTokens: precise})
	uids := make([]string, 0, n/2)
	for i := range n / 2 {
		id, err := conn.Put(class, connector.Attributes{"uid": {"user" + strconv.Itoa(i)}, "mail": {"u@example.com"}, "cn": {"User"}})
		if err != nil {
			b.Fatal(err)
		}
		uids = append(uids, id.UID)
	}
	for _, uid := range uids {
		if _, err := conn.ModifyDirect(class, uid, connector.AttributeDelta{Op: connector.Replace, Name: "mail", Values: []string{"v@example.com"}}); err != nil {
			b.Fatal(err)
		}
	}
	return conn
}

// BenchmarkTask measures a run over memconn and memstore with a no-op
// handler: changes/s.
func BenchmarkTask(b *testing.B) {
	for _, bc := range []struct {
		name    string
		precise bool
		group   int
		workers int
	}{
		{"precise", true, 1, 1},
		{"precise-group100", true, 100, 1},
		{"imprecise", false, 1, 1},
		{"precise-workers2", true, 1, 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 20000
			conn := benchStream(b, n, bc.precise)
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				cfg := livesync.Config{
					ResourceID: "res", Class: class, Connector: conn,
					Store: memstore.New(memstore.Options{}), Tokens: livesync.NewMemoryTokenStore(),
					Handler:            func(context.Context, livesync.Event) error { return nil },
					StartFromBeginning: true, GroupCommit: bc.group, Workers: bc.workers,
				}
				task, err := livesync.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := task.Run(context.Background())
				if err != nil || res.Processed != n {
					b.Fatalf("%+v %v", res, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// BenchmarkHandLoop is the baseline: the same fetches and shadow writes
// done by hand, without the engine.
func BenchmarkHandLoop(b *testing.B) {
	const n = 20000
	conn := benchStream(b, n, true)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		st := memstore.New(memstore.Options{})
		b.StartTimer()
		var from connector.Token
		for {
			batch, err := conn.FetchChanges(ctx, class, from, 0)
			if err != nil {
				b.Fatal(err)
			}
			for i := range batch.Changes {
				ch := &batch.Changes[i]
				sh, err := shadow.FindLive(ctx, st, "res", class, connector.Identifiers{UID: ch.ID.UID})
				if err != nil {
					b.Fatal(err)
				}
				if sh == nil {
					err = st.Create(ctx, &shadow.Shadow{ResourceID: "res", Class: class, UID: ch.ID.UID, Name: ch.ID.Name,
						Attributes: ch.Object, Exists: true, Origin: shadow.OriginDiscovered})
				} else {
					sh.Attributes = ch.Object
					err = st.Update(ctx, sh)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			from = batch.Token
			if !batch.More {
				break
			}
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkTaskSQLite measures a run into SQLite with group commits of 100
// (shadows and token in one transaction).
func BenchmarkTaskSQLite(b *testing.B) {
	const n = 1000
	conn := benchStream(b, n, true)
	for b.Loop() {
		b.StopTimer()
		st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "umbra.db"), sqlstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		task, err := livesync.New(livesync.Config{
			ResourceID: "res", Class: class, Connector: conn, Store: st, Tokens: st,
			Handler:            func(context.Context, livesync.Event) error { return nil },
			StartFromBeginning: true, GroupCommit: 100,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := task.Run(context.Background())
		if err != nil || res.Processed != n {
			b.Fatalf("%+v %v", res, err)
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}
