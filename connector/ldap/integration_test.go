package ldap

import (
	"context"
	"sync"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// events records what a live-sync handler saw.
type events struct {
	mu  sync.Mutex
	evs []livesync.Event
}

func (e *events) handle(_ context.Context, ev livesync.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return nil
}

func (e *events) take() []livesync.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.evs
	e.evs = nil
	return out
}

// directWrites adds, modifies, renames and deletes entries directly on the
// directory (not through the connector), as another administrator would.
type directWrites struct {
	t    *testing.T
	conn *goldap.Conn
	base string
}

func (d directWrites) add(uid string) {
	d.t.Helper()
	req := goldap.NewAddRequest("uid="+uid+","+d.base, nil)
	req.Attribute("objectClass", []string{"inetOrgPerson"})
	req.Attribute("uid", []string{uid})
	req.Attribute("cn", []string{"Direct " + uid})
	req.Attribute("sn", []string{"Direct"})
	if err := d.conn.Add(req); err != nil {
		d.t.Fatal(err)
	}
}

func (d directWrites) modify(uid, mail string) {
	d.t.Helper()
	req := goldap.NewModifyRequest("uid="+uid+","+d.base, nil)
	req.Replace("mail", []string{mail})
	if err := d.conn.Modify(req); err != nil {
		d.t.Fatal(err)
	}
}

func (d directWrites) rename(uid, to string) {
	d.t.Helper()
	if err := d.conn.ModifyDN(goldap.NewModifyDNRequest("uid="+uid+","+d.base, "uid="+to, true, "")); err != nil {
		d.t.Fatal(err)
	}
}

func (d directWrites) del(uid string) {
	d.t.Helper()
	if err := d.conn.Del(goldap.NewDelRequest("uid="+uid+","+d.base, nil)); err != nil {
		d.t.Fatal(err)
	}
}

func newTask(t *testing.T, c *Connector, store shadow.Store, h livesync.Handler) *livesync.Task {
	t.Helper()
	task, err := livesync.New(livesync.Config{
		ResourceID: "ldap", Class: personClass, Connector: c, Store: store,
		Tokens: livesync.NewMemoryTokenStore(), Handler: h,
	})
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// TestLiveSyncEngineAccessLog feeds the livesync engine from the access log:
// a create, a modify, a rename and a delete made directly on the directory
// arrive as such, the rename followed by UID, the delete found by DN.
func TestLiveSyncEngineAccessLog(t *testing.T) {
	t.Parallel()
	c, s, base := setup(t)
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	var got events
	task := newTask(t, c, store, got.handle)
	first, err := task.Run(ctx)
	if err != nil || !first.FirstRun || first.Processed != 0 {
		t.Fatalf("first run: %+v %v", first, err)
	}
	d := directWrites{t, admin(t, s), base}
	d.add("olga")
	d.modify("olga", "olga@example.com")
	d.rename("olga", "olga2")
	res, err := task.Run(ctx)
	if err != nil || res.Processed != 3 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	evs := got.take()
	uid := evs[0].Change.ID.UID
	if evs[0].Change.Type != connector.ChangeCreate || evs[0].Before != nil || evs[0].After == nil || uid == "" {
		t.Fatalf("create event %+v", evs[0])
	}
	if evs[1].Change.Type != connector.ChangeModify || evs[1].After.Attributes.Get("mail") != "olga@example.com" {
		t.Fatalf("modify event %+v (after %+v)", evs[1].Change, evs[1].After)
	}
	ren := evs[2]
	if ren.Change.OldName != "uid=olga,"+base || ren.After.Name != "uid=olga2,"+base || ren.After.UID != uid {
		t.Fatalf("rename event %+v, after %+v", ren.Change, ren.After)
	}
	d.del("olga2")
	res, err = task.Run(ctx)
	if err != nil || res.Processed != 1 {
		t.Fatalf("third run: %+v %v", res, err)
	}
	evs = got.take()
	if evs[0].Change.Type != connector.ChangeDelete || evs[0].Before == nil || evs[0].Before.UID != uid || evs[0].After == nil || !evs[0].After.Dead {
		t.Fatalf("delete event %+v, before %+v, after %+v", evs[0].Change, evs[0].Before, evs[0].After)
	}
	// Nothing more, and the stored token is precise (the last change's).
	res, err = task.Run(ctx)
	if err != nil || res.Processed != 0 {
		t.Fatalf("idle run: %+v %v", res, err)
	}
}

// TestLiveSyncEngineModifyTimestamp feeds the engine from modifyTimestamp:
// creates and modifies arrive as create-or-modify, the rename is followed by
// UID, and deletes are not seen.
func TestLiveSyncEngineModifyTimestamp(t *testing.T) {
	t.Parallel()
	c, s, base := setup(t, func(cfg *Config) { cfg.LiveSync = LiveSyncModifyTimestamp })
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	var got events
	task := newTask(t, c, store, got.handle)
	if _, err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	d := directWrites{t, admin(t, s), base}
	d.add("pia")
	res, err := task.Run(ctx)
	if err != nil || res.Processed != 1 {
		t.Fatalf("run after add: %+v %v", res, err)
	}
	evs := got.take()
	uid := evs[0].After.UID
	if evs[0].Before != nil || uid == "" || evs[0].After.Attributes.Get("cn") != "Direct pia" {
		t.Fatalf("create event %+v after %+v", evs[0].Change, evs[0].After)
	}
	d.modify("pia", "pia@example.com")
	d.rename("pia", "pia2")
	res, err = task.Run(ctx)
	if err != nil || res.Processed < 1 {
		t.Fatalf("run after modify and rename: %+v %v", res, err)
	}
	evs = got.take()
	last := evs[len(evs)-1]
	if last.Before == nil || last.After.UID != uid || last.After.Name != "uid=pia2,"+base || last.After.Attributes.Get("mail") != "pia@example.com" {
		t.Fatalf("modify event %+v before %+v after %+v", last.Change, last.Before, last.After)
	}
	// An idle run delivers nothing again (unchanged objects of the boundary
	// second are skipped).
	res, err = task.Run(ctx)
	if err != nil || res.Processed != 0 {
		t.Fatalf("idle run: %+v %v", res, err)
	}
	// Deletes are invisible to this strategy: the shadow stays live until
	// reconciliation.
	d.del("pia2")
	res, err = task.Run(ctx)
	if err != nil || res.Processed != 0 {
		t.Fatalf("run after delete: %+v %v", res, err)
	}
	sh, err := store.Get(ctx, last.After.ID)
	if err != nil || sh.Dead {
		t.Fatalf("shadow after an unseen delete: %+v %v", sh, err)
	}
}

// TestConsistencyOutage stops slapd: the consistency engine postpones an
// add (communication error, not sent); after a restart a refresh completes
// it, and the entry exists once.
func TestConsistencyOutage(t *testing.T) {
	t.Parallel()
	sharedSlapd(t)
	s := testsvc.StartSlapd(t)
	c := newConnector(t, testConfig(s, s.PeopleDN))
	ctx := context.Background()
	clock := connector.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	engine, err := consistency.New(consistency.Config{
		Clock:     clock,
		Store:     memstore.New(memstore.Options{Clock: clock}),
		Resources: []consistency.Resource{{ID: "ldap", Connector: c}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	out, err := engine.Add(ctx, consistency.AddRequest{
		ResourceID: "ldap", Class: personClass, Name: "uid=quinn," + s.PeopleDN, Attributes: person("quinn"),
	})
	if err != nil {
		t.Fatalf("add while down: %v", err)
	}
	if out.Status == consistency.Done || out.Shadow.Exists {
		t.Fatalf("add while down: %+v, want postponed", out)
	}
	if st, err := engine.Status("ldap"); err != nil || st.Availability == consistency.Up {
		t.Fatalf("resource status while down: %+v %v", st, err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(consistency.OperationRetryPeriodDefault)
	res, err := engine.RefreshShadow(ctx, out.Shadow.ID)
	if err != nil || res.Completed != 1 {
		t.Fatalf("refresh after restart: %+v %v", res, err)
	}
	view, err := engine.Get(ctx, out.Shadow.ID, consistency.GetOptions{})
	if err != nil || !view.Exists || view.Shadow.UID == "" || view.Shadow.Name != "uid=quinn,"+s.PeopleDN {
		t.Fatalf("shadow after refresh: %+v %v", view, err)
	}
	n := 0
	if err := c.Search(ctx, personClass, connector.SearchOptions{}, func(o connector.Object) error {
		if o.Attributes.Get("uid") == "quinn" {
			n++
		}
		return nil
	}); err != nil || n != 1 {
		t.Fatalf("entries named quinn: %d (%v), want 1", n, err)
	}
}
