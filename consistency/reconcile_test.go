package consistency_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

const recClass = connector.ObjectClass("account")

type recBundle struct {
	ctx    context.Context
	clock  *connector.FakeClock
	conn   *memconn.Conn
	store  shadow.Store
	engine *consistency.Engine
}

// eachStore runs fn as a parallel subtest over each store kind: memory,
// SQLite in a file, and PostgreSQL (skipped without a server unless
// UMBRA_FULL=1).
func eachStore(t *testing.T, fn func(t *testing.T, b *recBundle)) {
	for _, kind := range []string{"memory", "sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			clk := connector.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			var store shadow.Store
			switch kind {
			case "sqlite":
				s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"), sqlstore.Options{Clock: clk})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				store = s
			case "postgres":
				s, err := sqlstore.OpenPostgres(context.Background(), testsvc.PostgresDSN(t), sqlstore.Options{Clock: clk})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				store = s
			}
			fn(t, recSetupClock(t, store, clk))
		})
	}
}

// recSetup wires an engine over memconn and the given store (memstore when
// nil).
func recSetup(t *testing.T, store shadow.Store) *recBundle {
	t.Helper()
	return recSetupClock(t, store, connector.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
}

func recSetupClock(t *testing.T, store shadow.Store, clk *connector.FakeClock) *recBundle {
	t.Helper()
	if store == nil {
		store = memstore.New(memstore.Options{Clock: clk})
	}
	conn := memconn.New(memconn.Options{Clock: clk})
	e, err := consistency.New(consistency.Config{Store: store, Clock: clk,
		Resources: []consistency.Resource{{ID: "r", Connector: conn}}})
	if err != nil {
		t.Fatal(err)
	}
	return &recBundle{ctx: context.Background(), clock: clk, conn: conn, store: store, engine: e}
}

// provision adds n accounts through the engine (origin assigned).
func (b *recBundle) provision(t *testing.T, n int) []*shadow.Shadow {
	t.Helper()
	var out []*shadow.Shadow
	for i := range n {
		name := fmt.Sprintf("user%03d", i)
		o, err := b.engine.Add(b.ctx, consistency.AddRequest{ResourceID: "r", Class: recClass, Name: name,
			Attributes: connector.Attributes{"uid": {name}, "mail": {name + "@example.com"}}})
		if err != nil || o.Status != consistency.Done {
			t.Fatalf("Add %s: %v %v", name, o.Status, err)
		}
		out = append(out, o.Shadow)
	}
	return out
}

func (b *recBundle) reconcile(t *testing.T, opts consistency.ReconcileOptions) (consistency.ReconcileResult, error) {
	t.Helper()
	opts.ResourceID, opts.Class = "r", recClass
	return b.engine.Reconcile(b.ctx, opts)
}

func (b *recBundle) get(t *testing.T, id string) *shadow.Shadow {
	t.Helper()
	sh, err := b.store.Get(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func TestReconcileNothingToDo(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		b.provision(t, 5)
		res, err := b.reconcile(t, consistency.ReconcileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Seen != 5 || res.Created+res.Updated+res.Vanished+res.Errors != 0 {
			t.Fatalf("result %+v, want 5 seen and nothing else", res)
		}
	})
}

func TestReconcileUnmatchedDriftAndVanished(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		shs := b.provision(t, 6)
		// Behind the engine's back: a new object, a changed one, two removed.
		newID, err := b.conn.Put(recClass, connector.Attributes{"uid": {"intruder"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.conn.ModifyDirect(recClass, shs[0].UID, connector.AttributeDelta{Op: connector.Replace, Name: "mail", Values: []string{"changed@example.com"}}); err != nil {
			t.Fatal(err)
		}
		if err := b.conn.Remove(recClass, shs[1].UID); err != nil { // assigned: re-created
			t.Fatal(err)
		}
		// A discovered shadow whose object vanishes: marked dead.
		disc := &shadow.Shadow{ResourceID: "r", Class: recClass, UID: "", Name: "", Origin: shadow.OriginDiscovered}
		if ids, err := b.conn.Put(recClass, connector.Attributes{"uid": {"found"}}); err != nil {
			t.Fatal(err)
		} else {
			disc.UID, disc.Name, disc.Exists = ids.UID, ids.Name, true
			disc.Attributes = connector.Attributes{"uid": {"found"}}
		}
		if err := b.store.Create(b.ctx, disc); err != nil {
			t.Fatal(err)
		}
		if err := b.conn.Remove(recClass, disc.UID); err != nil {
			t.Fatal(err)
		}

		var unmatched, changed []string
		var vanished []bool
		res, err := b.reconcile(t, consistency.ReconcileOptions{Handler: consistency.ReconcileHandler{
			Unmatched: func(_ context.Context, sh *shadow.Shadow, dry bool) error {
				unmatched = append(unmatched, sh.Name)
				return nil
			},
			Changed: func(_ context.Context, sh *shadow.Shadow, ch []connector.AttributeDelta, dry bool) error {
				changed = append(changed, fmt.Sprintf("%s:%s=%v", sh.Name, ch[0].Name, ch[0].Values))
				return nil
			},
			Vanished: func(_ context.Context, sh *shadow.Shadow, recreated, dry bool) error {
				vanished = append(vanished, recreated)
				return nil
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Seen != 6 || res.Created != 1 || res.Updated != 1 || res.Vanished != 2 || res.Recreated != 1 || res.MarkedDead != 1 {
			t.Fatalf("result %+v", res)
		}
		if len(unmatched) != 1 || unmatched[0] != "intruder" {
			t.Errorf("unmatched %v", unmatched)
		}
		if len(changed) != 1 || changed[0] != "user000:mail=[changed@example.com]" {
			t.Errorf("changed %v", changed)
		}
		if len(vanished) != 2 {
			t.Errorf("vanished handler calls %v", vanished)
		}
		// The intruder has a discovered shadow.
		if sh, err := shadow.FindLive(b.ctx, b.store, "r", recClass, newID); err != nil || sh == nil || sh.Origin != shadow.OriginDiscovered {
			t.Errorf("intruder shadow %+v %v", sh, err)
		}
		// The drifted cache was updated.
		if got := b.get(t, shs[0].ID).Attributes.Get("mail"); got != "changed@example.com" {
			t.Errorf("cache mail %q", got)
		}
		// The assigned shadow's object is back on the resource, under a new UID.
		re := b.get(t, shs[1].ID)
		if !re.Live() || re.UID == shs[1].UID {
			t.Errorf("re-created shadow %+v", re)
		}
		if _, ok := b.conn.ObjectByName(recClass, "user001"); !ok {
			t.Error("user001 was not re-created on the resource")
		}
		if d := b.get(t, disc.ID); !d.Dead {
			t.Errorf("discovered shadow not dead: %+v", d)
		}
		// A second run finds everything in order.
		res, err = b.reconcile(t, consistency.ReconcileOptions{})
		if err != nil || res.Created+res.Updated+res.Vanished != 0 || res.Seen != 7 {
			t.Fatalf("second run %+v %v", res, err)
		}
	})
}

func TestReconcileMassDeletionGuard(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		shs := b.provision(t, 10)
		for _, sh := range shs {
			if err := b.conn.Remove(recClass, sh.UID); err != nil {
				t.Fatal(err)
			}
		}
		// An empty scan marks nothing dead and re-creates nothing.
		res, err := b.reconcile(t, consistency.ReconcileOptions{})
		if !errors.Is(err, consistency.ErrMassDeletion) || !res.Guarded {
			t.Fatalf("empty scan: %+v %v, want the guard", res, err)
		}
		if b.conn.Len(recClass) != 0 || res.Vanished != 0 {
			t.Fatalf("the guarded run acted: %d objects, %+v", b.conn.Len(recClass), res)
		}
		for _, sh := range shs {
			if s := b.get(t, sh.ID); !s.Live() {
				t.Fatalf("shadow %s changed by a guarded run", sh.ID)
			}
		}
		// Restore most objects: 3 of 10 missing is within the default share...
		for _, sh := range shs[3:] {
			if _, err := b.conn.Put(recClass, sh.Attributes); err != nil {
				t.Fatal(err)
			}
		}
		// ...but not within a count of 2.
		if _, err := b.reconcile(t, consistency.ReconcileOptions{MaxVanished: 2}); !errors.Is(err, consistency.ErrMassDeletion) {
			t.Fatalf("MaxVanished 2 with 3 missing: %v", err)
		}
		// The override lets it through.
		res, err = b.reconcile(t, consistency.ReconcileOptions{MaxVanished: 2, AllowMassDeletion: true})
		if err != nil || res.Vanished != 3 || res.Recreated != 3 || res.Errors != 0 {
			t.Fatalf("override: %+v %v", res, err)
		}
		// The seven objects made again under their names were relinked, the
		// three missing ones re-created: ten live shadows, ten objects, no
		// discovered extras.
		if n := b.conn.Len(recClass); n != 10 {
			t.Errorf("%d objects on the resource, want 10", n)
		}
		for _, sh := range shs {
			got := b.get(t, sh.ID)
			if obj, ok := b.conn.ObjectByName(recClass, sh.Name); !got.Live() || !ok || obj.ID.UID != got.UID {
				t.Errorf("shadow %s (%s) not linked to its object: %+v", sh.ID, sh.Name, got)
			}
		}
		if n, _ := b.store.Count(b.ctx, shadow.Query{}); n != 10 {
			t.Errorf("%d shadows, want 10", n)
		}
	})
}

func TestReconcileResourceDownMidScan(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		b.provision(t, 20)
		b.conn.FailNextOp(memconn.CallSearch, 1, connector.NewError(connector.CategoryOutcomeUnknown, "search", errors.New("connection lost")))
		res, err := b.reconcile(t, consistency.ReconcileOptions{PageSize: 5})
		if !errors.Is(err, connector.ErrCommunication) {
			t.Fatalf("scan with a failing search: %v", err)
		}
		if res.Vanished+res.MarkedDead+res.Recreated != 0 {
			t.Fatalf("a failed scan marked shadows: %+v", res)
		}
		n, err := b.store.Count(b.ctx, shadow.Query{ResourceID: "r", Dead: shadow.DeadOnly})
		if err != nil || n != 0 {
			t.Fatalf("%d dead shadows after a failed scan (%v)", n, err)
		}
		if st, _ := b.engine.Status("r"); st.Availability != consistency.Down {
			t.Errorf("resource %v after a communication failure, want down", st.Availability)
		}
	})
}

func TestReconcileRefreshesPendingAndSkipsPendingAdds(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		shs := b.provision(t, 3)
		b.conn.Down()
		o, err := b.engine.Modify(b.ctx, shs[0].ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"new@example.com"}}})
		if err != nil || o.Status != consistency.Pending {
			t.Fatalf("modify while down: %v %v", o.Status, err)
		}
		add, err := b.engine.Add(b.ctx, consistency.AddRequest{ResourceID: "r", Class: recClass, Name: "late",
			Attributes: connector.Attributes{"uid": {"late"}}})
		if err != nil || add.Status != consistency.Pending {
			t.Fatalf("add while down: %v %v", add.Status, err)
		}
		b.conn.Up()
		b.clock.Advance(31 * time.Minute)
		if err := b.engine.Probe(b.ctx, "r"); err != nil {
			t.Fatal(err)
		}
		res, err := b.reconcile(t, consistency.ReconcileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Refreshed != 1 || res.Vanished != 0 {
			t.Fatalf("result %+v, want one refreshed and none vanished", res)
		}
		if got := b.get(t, shs[0].ID); got.Unfinished() || got.Attributes.Get("mail") != "new@example.com" {
			t.Errorf("pending modify not completed by reconciliation: %+v", got)
		}
		obj, _ := b.conn.ObjectByName(recClass, shs[0].Name)
		if obj.Attributes.Get("mail") != "new@example.com" {
			t.Errorf("resource mail %q", obj.Attributes.Get("mail"))
		}
		if got := b.get(t, add.Shadow.ID); got.Dead {
			t.Errorf("a shadow whose add is pending was swept: %+v", got)
		}
	})
}

func TestReconcileReappeared(t *testing.T) {
	t.Parallel()
	for _, resurrect := range []bool{false, true} {
		t.Run(fmt.Sprint("resurrect=", resurrect), func(t *testing.T) {
			t.Parallel()
			b := recSetup(t, nil)
			sh := &shadow.Shadow{ResourceID: "r", Class: recClass, Origin: shadow.OriginDiscovered}
			ids, err := b.conn.Put(recClass, connector.Attributes{"uid": {"ghost"}})
			if err != nil {
				t.Fatal(err)
			}
			sh.UID, sh.Name, sh.Exists, sh.Dead, sh.DeadSince = ids.UID, ids.Name, true, true, b.clock.Now()
			if err := b.store.Create(b.ctx, sh); err != nil {
				t.Fatal(err)
			}
			called := 0
			res, err := b.reconcile(t, consistency.ReconcileOptions{Handler: consistency.ReconcileHandler{
				Reappeared: func(_ context.Context, d *shadow.Shadow, obj connector.Object, dry bool) (bool, error) {
					called++
					if d.ID != sh.ID || obj.ID.UID != ids.UID {
						t.Errorf("Reappeared got %s / %s", d.ID, obj.ID.UID)
					}
					return resurrect, nil
				}}})
			if err != nil || called != 1 || res.Reappeared != 1 || res.Created != 0 {
				t.Fatalf("%+v %v called %d", res, err, called)
			}
			if got := b.get(t, sh.ID); got.Dead == resurrect {
				t.Errorf("dead = %v after resurrect = %v", got.Dead, resurrect)
			}
		})
	}
}

func TestReconcileDryRun(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		shs := b.provision(t, 4)
		if _, err := b.conn.Put(recClass, connector.Attributes{"uid": {"intruder"}}); err != nil {
			t.Fatal(err)
		}
		if err := b.conn.Remove(recClass, shs[2].UID); err != nil {
			t.Fatal(err)
		}
		before, _ := b.store.Count(b.ctx, shadow.Query{})
		calls := b.conn.Calls(memconn.CallAdd)
		res, err := b.reconcile(t, consistency.ReconcileOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.DryRun || res.Created != 1 || res.Vanished != 1 || res.Recreated != 1 {
			t.Fatalf("dry run result %+v", res)
		}
		after, _ := b.store.Count(b.ctx, shadow.Query{})
		if after != before || b.conn.Calls(memconn.CallAdd) != calls {
			t.Fatalf("dry run changed things: shadows %d→%d, adds %d→%d", before, after, calls, b.conn.Calls(memconn.CallAdd))
		}
		if got := b.get(t, shs[2].ID); !got.Live() || !got.ReconciledAt.IsZero() {
			t.Errorf("dry run touched shadow %+v", got)
		}
	})
}

func TestReconcileCancelled(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		b.provision(t, 30)
		ctx, cancel := context.WithCancel(b.ctx)
		n := 0
		_, err := b.engine.Reconcile(ctx, consistency.ReconcileOptions{ResourceID: "r", Class: recClass, PageSize: 5,
			Progress: func(p consistency.ReconcileProgress) {
				if n++; n == 7 {
					cancel()
				}
			}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled run: %v", err)
		}
		if n > 8 {
			t.Errorf("%d objects handled after cancel at 7", n)
		}
	})
}

func TestReconcileBadInput(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, b *recBundle) {
		for _, opts := range []consistency.ReconcileOptions{
			{ResourceID: "nope", Class: recClass},
			{ResourceID: "r"},
			{ResourceID: "r", Class: recClass, MaxVanishedShare: 2},
			{ResourceID: "r", Class: recClass, MaxVanished: -1},
		} {
			if _, err := b.engine.Reconcile(b.ctx, opts); err == nil {
				t.Errorf("Reconcile(%+v) accepted bad options", opts)
			}
		}
	})
}

// BenchmarkReconcile reports the bytes allocated per reconciled object, for
// 10,000 and 100,000 objects: the figure must stay flat, since neither side
// of the comparison is held in memory.
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			clk := connector.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			store := memstore.New(memstore.Options{Clock: clk})
			conn := memconn.New(memconn.Options{Clock: clk})
			e, err := consistency.New(consistency.Config{Store: store, Clock: clk,
				Resources: []consistency.Resource{{ID: "r", Connector: conn}}})
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				ids, err := conn.Put(recClass, connector.Attributes{"uid": {fmt.Sprintf("u%07d", i)}, "mail": {"m"}})
				if err != nil {
					b.Fatal(err)
				}
				if err := store.Create(ctx, &shadow.Shadow{ResourceID: "r", Class: recClass, UID: ids.UID, Name: ids.Name,
					Exists: true, Origin: shadow.OriginDiscovered, Attributes: connector.Attributes{"uid": {ids.Name}, "mail": {"m"}}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			var bytes uint64
			for range b.N {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				res, err := e.Reconcile(ctx, consistency.ReconcileOptions{ResourceID: "r", Class: recClass})
				runtime.ReadMemStats(&after)
				if err != nil || res.Seen != n {
					b.Fatalf("%+v %v", res, err)
				}
				bytes += after.TotalAlloc - before.TotalAlloc
			}
			b.ReportMetric(float64(bytes)/float64(b.N)/float64(n), "B/object")
		})
	}
}
