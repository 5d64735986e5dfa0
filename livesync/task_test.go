package livesync_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

func TestFirstRunTakesCurrentToken(t *testing.T) {
	t.Parallel()
	for _, precise := range []bool{true, false} {
		b := setup(t, memconn.Options{PreciseTokens: precise})
		b.put(t, "old1")
		b.put(t, "old2")
		task := b.task(t, nil)
		res := mustRun(t, task)
		if !res.FirstRun || res.Processed != 0 || res.Fetched != 0 {
			t.Fatalf("precise=%v first run: %+v, want FirstRun and nothing processed", precise, res)
		}
		if got, want := b.token(t, task), b.latest(t); got != want || res.TokenAfter != want {
			t.Fatalf("precise=%v token after first run %q (result %q), want latest %q", precise, got, res.TokenAfter, want)
		}
		if n := len(b.rec.take()); n != 0 {
			t.Fatalf("handler saw %d events in the first run", n)
		}
		b.put(t, "new1")
		res = mustRun(t, task)
		if res.FirstRun || res.Processed != 1 || res.ByType[connector.ChangeCreate] != 1 {
			t.Fatalf("precise=%v second run: %+v, want one create processed", precise, res)
		}
		if got := names(b.rec.take()); !slices.Equal(got, []string{"new1"}) {
			t.Fatalf("second run delivered %v, want [new1]", got)
		}
		if sh := b.shadows(t); len(sh) != 1 {
			t.Fatalf("%d shadows, want only new1's", len(sh))
		}
	}
}

func TestStartFromBeginning(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	b.put(t, "a")
	b.put(t, "b")
	task := b.task(t, func(c *livesync.Config) { c.StartFromBeginning = true })
	res := mustRun(t, task)
	if !res.FirstRun || res.Processed != 2 || res.TokenBefore != "" || res.TokenAfter != b.latest(t) {
		t.Fatalf("run: %+v", res)
	}
	b.assertMirror(t)
}

func TestShadowLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, nil)
	mustRun(t, task)
	a := b.put(t, "alice", "mail", "a@x")
	mustRun(t, task)
	evs := b.rec.take()
	if len(evs) != 1 || evs[0].Before != nil || evs[0].After == nil || !evs[0].After.Live() || evs[0].After.Origin != shadow.OriginDiscovered {
		t.Fatalf("create event: %+v", evs)
	}
	created := evs[0].After

	b.modify(t, a.UID, "mail", "alice@x")
	mustRun(t, task)
	evs = b.rec.take()
	if len(evs) != 1 || evs[0].Before == nil || evs[0].Before.Attributes.Get("mail") != "a@x" || evs[0].After.Attributes.Get("mail") != "alice@x" {
		t.Fatalf("modify event: %+v", evs)
	}
	// The handler's copies are its own.
	evs[0].After.Attributes["mail"] = []string{"scribble"}
	b.assertMirror(t)

	b.modify(t, a.UID, "uid", "alicia") // rename
	mustRun(t, task)
	evs = b.rec.take()
	if len(evs) != 1 || evs[0].Before.Name != "alice" || evs[0].After.Name != "alicia" || evs[0].After.ID != created.ID {
		t.Fatalf("rename event: %+v", evs)
	}
	b.assertMirror(t)

	b.clock.Advance(time.Hour)
	if err := b.conn.Remove(class, a.UID); err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, task)
	if res.ByType[connector.ChangeDelete] != 1 {
		t.Fatalf("delete run: %+v", res)
	}
	evs = b.rec.take()
	if len(evs) != 1 || evs[0].After == nil || !evs[0].After.Dead || !evs[0].After.DeadSince.Equal(t0.Add(time.Hour)) {
		t.Fatalf("delete event: %+v", evs)
	}
	dead, err := b.store.Get(context.Background(), created.ID)
	if err != nil || !dead.Dead || !dead.DeadSince.Equal(t0.Add(time.Hour)) || dead.Live() {
		t.Fatalf("shadow after delete: %+v, %v", dead, err)
	}
	b.assertMirror(t)

	// A delete of an object never shadowed reaches the handler with no
	// shadow at all.
	g := b.put(t, "ghost")
	task2 := b.task(t, func(c *livesync.Config) { c.TaskName = "other" })
	mustRun(t, task2) // takes the token after ghost's create
	if err := b.conn.Remove(class, g.UID); err != nil {
		t.Fatal(err)
	}
	mustRun(t, task2)
	evs = b.rec.take()
	last := evs[len(evs)-1]
	if last.Change.Type != connector.ChangeDelete || last.Before != nil || last.After != nil {
		t.Fatalf("delete of an unknown object: %+v", last)
	}
}

func TestChangeWithoutAttributesIsFetched(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true, OmitChangeAttributes: true})
	task := b.task(t, nil)
	mustRun(t, task)
	a := b.put(t, "alice", "mail", "a@x")
	c := b.put(t, "carol")
	b.modify(t, a.UID, "mail", "b@x")
	if err := b.conn.Remove(class, c.UID); err != nil {
		t.Fatal(err)
	}
	gets := b.conn.Calls(memconn.CallGet)
	res := mustRun(t, task)
	if n := b.conn.Calls(memconn.CallGet) - gets; n != 3 {
		t.Fatalf("%d gets, want 3 (two creates and a modify; never for a delete)", n)
	}
	// carol's create is applied as a delete: the get found her gone.
	if res.ByType[connector.ChangeCreate] != 1 || res.ByType[connector.ChangeModify] != 1 || res.ByType[connector.ChangeDelete] != 2 {
		t.Fatalf("by type: %v", res.ByType)
	}
	evs := b.rec.take()
	if evs[0].Change.Object.Get("mail") != "b@x" {
		t.Fatalf("event of a change without attributes carries %v, want the object read", evs[0].Change.Object)
	}
	if evs[1].Change.Type != connector.ChangeDelete || evs[1].After != nil {
		t.Fatalf("create of a vanished object: %+v", evs[1])
	}
	b.assertMirror(t)

	// A failing get goes through the policy and stops the run before
	// the change.
	b.modify(t, a.UID, "mail", "c@x")
	b.conn.FailNextOp(memconn.CallGet, 1, connector.NewError(connector.CategoryOutcomeUnknown, "get", errors.New("timeout")))
	before := b.token(t, task)
	if _, err := task.Run(context.Background()); !errors.Is(err, connector.ErrOutcomeUnknown) {
		t.Fatalf("run with a failing get: %v", err)
	}
	if b.token(t, task) != before {
		t.Fatal("token moved past a change whose get failed")
	}
	mustRun(t, task)
	b.assertMirror(t)
}

// stream makes n changes: creates of o0..o(n-1).
func (b *bundle) stream(t *testing.T, n int) []connector.Identifiers {
	t.Helper()
	ids := make([]connector.Identifiers, n)
	for i := range n {
		ids[i] = b.put(t, "o"+strconv.Itoa(i))
	}
	return ids
}

func failOn(name string, times int) func(livesync.Event) error {
	var mu sync.Mutex
	return func(ev livesync.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.Change.ID.Name == name && times > 0 {
			times--
			return errors.New("handler failed on " + name)
		}
		return nil
	}
}

func TestResumeAfterErrorPrecise(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true, MaxFetch: 3})
	task := b.task(t, nil)
	mustRun(t, task)
	start := b.latest(t)
	b.stream(t, 6) // fetches: o0..o2, o3..o5
	b.rec.setFail(failOn("o4", 1))
	res, err := task.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "handler failed on o4") {
		t.Fatalf("run: %v", err)
	}
	if res.Processed != 4 || res.Failed != 1 || res.TokenBefore != start || res.TokenAfter != tok(4) || b.token(t, task) != tok(4) {
		t.Fatalf("stopped run: %+v, stored %q", res, b.token(t, task))
	}
	b.rec.take()
	res = mustRun(t, task)
	if got := names(b.rec.take()); !slices.Equal(got, []string{"o4", "o5"}) {
		t.Fatalf("resumed run delivered %v, want from the failed change on", got)
	}
	if res.TokenAfter != tok(6) {
		t.Fatalf("token after %q", res.TokenAfter)
	}
	b.assertMirror(t)
}

func TestResumeAfterErrorImprecise(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{MaxFetch: 4})
	task := b.task(t, nil)
	mustRun(t, task)
	b.stream(t, 6) // fetches: o0..o3, o4..o5
	b.rec.setFail(failOn("o5", 1))
	res, err := task.Run(context.Background())
	if err == nil {
		t.Fatal("run did not stop")
	}
	// The first fetch was done whole: its token is stored; the second
	// stopped in the middle: its token is not.
	if res.Processed != 5 || b.token(t, task) != tok(4) {
		t.Fatalf("stopped run %+v, token %q", res, b.token(t, task))
	}
	b.rec.take()
	mustRun(t, task)
	if got := names(b.rec.take()); !slices.Equal(got, []string{"o4", "o5"}) {
		t.Fatalf("resumed run delivered %v, want the whole second fetch again", got)
	}

	// Within a single fetch, the whole fetch comes again.
	b2 := setup(t, memconn.Options{})
	task2 := b2.task(t, nil)
	mustRun(t, task2)
	b2.stream(t, 5)
	b2.rec.setFail(failOn("o2", 1))
	if _, err := task2.Run(context.Background()); err == nil {
		t.Fatal("run did not stop")
	}
	if got := b2.token(t, task2); got != tok(0) {
		t.Fatalf("token moved to %q in a stopped imprecise fetch", got)
	}
	b2.rec.take()
	mustRun(t, task2)
	if got := names(b2.rec.take()); !slices.Equal(got, []string{"o0", "o1", "o2", "o3", "o4"}) {
		t.Fatalf("resumed run delivered %v, want the whole fetch", got)
	}
	b2.assertMirror(t)
}

func TestBatchSize(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true, MaxFetch: 2})
	task := b.task(t, func(c *livesync.Config) { c.BatchSize = 3 })
	mustRun(t, task)
	b.stream(t, 8)
	var got []int
	for range 4 {
		res := mustRun(t, task)
		got = append(got, res.Processed)
	}
	if !slices.Equal(got, []int{3, 3, 2, 0}) {
		t.Fatalf("runs processed %v, want [3 3 2 0]", got)
	}
	if len(b.rec.take()) != 8 {
		t.Fatal("not every change delivered once")
	}
	b.assertMirror(t)

	// Refused for imprecise tokens.
	bi := setup(t, memconn.Options{})
	cfg := bi.config()
	cfg.BatchSize = 3
	if _, err := livesync.New(cfg); err == nil || !strings.Contains(err.Error(), "BatchSize") {
		t.Fatalf("New with BatchSize and imprecise tokens: %v", err)
	}
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	for _, update := range []bool{false, true} {
		b := setup(t, memconn.Options{PreciseTokens: true})
		real := b.task(t, nil)
		mustRun(t, real)
		start := b.token(t, real)
		b.stream(t, 3)
		dry := b.task(t, func(c *livesync.Config) { c.DryRun = true; c.UpdateTokenInDryRun = update })
		res := mustRun(t, dry)
		if !res.Dry || res.Processed != 3 {
			t.Fatalf("update=%v dry run: %+v", update, res)
		}
		for _, ev := range b.rec.take() {
			if !ev.Dry || ev.After == nil || !ev.After.Live() {
				t.Fatalf("dry event: %+v", ev)
			}
		}
		if n := b.store.Len(); n != 0 {
			t.Fatalf("update=%v: dry run stored %d shadows", update, n)
		}
		want := start
		if update {
			want = b.latest(t)
		}
		if got := b.token(t, real); got != want {
			t.Fatalf("update=%v: token after dry run %q, want %q", update, got, want)
		}
		res = mustRun(t, real)
		if update && res.Processed != 0 || !update && res.Processed != 3 {
			t.Fatalf("update=%v: real run after dry processed %d", update, res.Processed)
		}
	}

	// A dry first run stores no token.
	b := setup(t, memconn.Options{PreciseTokens: true})
	dry := b.task(t, func(c *livesync.Config) { c.DryRun = true })
	if res := mustRun(t, dry); !res.FirstRun {
		t.Fatalf("%+v", res)
	}
	if _, found, _ := dry.Token(context.Background()); found {
		t.Fatal("dry first run stored a token")
	}
}

func TestErrorPolicyIgnore(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	var failed []livesync.Action
	task := b.task(t, func(c *livesync.Config) {
		c.ErrorPolicy.Rules = []livesync.ErrorRule{
			{Categories: []connector.Category{connector.CategoryPolicy}, Action: livesync.ActionIgnore},
		}
		c.Observer.ChangeFailed = func(_ livesync.TokenKey, _ connector.Change, _ error, a livesync.Action) { failed = append(failed, a) }
	})
	mustRun(t, task)
	b.stream(t, 4)
	b.rec.setFail(func(ev livesync.Event) error {
		if ev.Change.ID.Name == "o1" {
			return connector.NewError(connector.CategoryPolicy, "host", errors.New("no"))
		}
		return nil
	})
	res := mustRun(t, task)
	if res.Processed != 3 || res.Ignored != 1 || res.TokenAfter != b.latest(t) {
		t.Fatalf("run: %+v", res)
	}
	if !slices.Equal(failed, []livesync.Action{livesync.ActionIgnore}) {
		t.Fatalf("observer saw %v", failed)
	}
	// Another category is not ignored.
	b.put(t, "x")
	b.rec.setFail(func(livesync.Event) error { return errors.New("generic") })
	if _, err := task.Run(context.Background()); err == nil {
		t.Fatal("generic error did not stop the run")
	}
}

func TestErrorPolicyStopAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, func(c *livesync.Config) {
		c.ErrorPolicy.Rules = []livesync.ErrorRule{{Action: livesync.ActionStopAfter, StopAfter: 3}}
	})
	mustRun(t, task)
	b.stream(t, 8)
	b.rec.setFail(func(ev livesync.Event) error {
		if ev.Change.ID.Name == "o1" || ev.Change.ID.Name == "o3" || ev.Change.ID.Name == "o5" || ev.Change.ID.Name == "o6" {
			return errors.New("boom")
		}
		return nil
	})
	res, err := task.Run(context.Background())
	if err == nil {
		t.Fatal("third error did not stop the run")
	}
	// o1 and o3 skipped, o5 stops: the token stays before o5.
	if res.Processed != 3 || res.Failed != 3 || res.TokenAfter != tok(5) {
		t.Fatalf("run: %+v", res)
	}
}

func TestErrorPolicySetAside(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	var givenUp []livesync.SetAsideChange
	task := b.task(t, func(c *livesync.Config) {
		c.ErrorPolicy.Rules = []livesync.ErrorRule{{
			Categories: []connector.Category{connector.CategoryOutcomeUnknown}, Action: livesync.ActionSetAside, MaxAttempts: 3,
		}}
		c.Observer.SetAsideGivenUp = func(_ livesync.TokenKey, c livesync.SetAsideChange) { givenUp = append(givenUp, c) }
	})
	mustRun(t, task)
	ids := b.stream(t, 3)
	down := func(name string) func(ev livesync.Event) error {
		return func(ev livesync.Event) error {
			if ev.Change.ID.Name == name {
				return connector.NewError(connector.CategoryOutcomeUnknown, "host", errors.New("target down"))
			}
			return nil
		}
	}
	b.rec.setFail(down("o1"))
	res := mustRun(t, task)
	if res.Processed != 2 || res.SetAside != 1 || res.TokenAfter != b.latest(t) {
		t.Fatalf("run: %+v", res)
	}
	aside, err := task.SetAsideChanges(context.Background())
	if err != nil || len(aside) != 1 || aside[0].Change.ID.Name != "o1" || aside[0].Attempts != 1 ||
		aside[0].LastErrorCategory != connector.CategoryOutcomeUnknown || !strings.Contains(aside[0].LastError, "target down") {
		t.Fatalf("set aside: %+v, %v", aside, err)
	}
	b.rec.take()

	// A later change of o1 waits behind the set-aside one.
	b.modify(t, ids[1].UID, "mail", "later")
	b.put(t, "o3")
	res = mustRun(t, task)
	if res.Retried != 1 || res.SetAside != 2 || res.Processed != 1 {
		t.Fatalf("second run: %+v", res)
	}
	if got := names(b.rec.take()); !slices.Equal(got, []string{"o3"}) {
		t.Fatalf("second run delivered %v", got)
	}
	aside, _ = task.SetAsideChanges(context.Background())
	if len(aside) != 2 || aside[0].Attempts != 2 || aside[1].Attempts != 0 || aside[1].Change.Type != connector.ChangeModify {
		t.Fatalf("set aside after the second run: %+v", aside)
	}

	// The target is back: both o1 changes go through, in order, first.
	b.rec.setFail(nil)
	b.put(t, "o4")
	res = mustRun(t, task)
	if res.Retried != 2 || res.Processed != 3 || res.SetAside != 0 {
		t.Fatalf("third run: %+v", res)
	}
	evs := b.rec.take()
	if got := names(evs); !slices.Equal(got, []string{"o1", "o1", "o4"}) || evs[0].Attempt != 3 || evs[1].Attempt != 1 || evs[2].Attempt != 0 {
		t.Fatalf("third run delivered %v", evs)
	}
	if aside, _ = task.SetAsideChanges(context.Background()); len(aside) != 0 {
		t.Fatalf("set aside after success: %+v", aside)
	}
	b.assertMirror(t)

	// MaxAttempts: given up after the third failed attempt.
	b.rec.setFail(down("o5"))
	b.put(t, "o5")
	for run := 1; run <= 3; run++ {
		mustRun(t, task)
	}
	if aside, _ = task.SetAsideChanges(context.Background()); len(aside) != 0 || len(givenUp) != 1 || givenUp[0].Attempts != 3 {
		t.Fatalf("after three attempts: aside %+v, given up %+v", aside, givenUp)
	}
}

func TestHandlerPanicIsAnError(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, nil)
	mustRun(t, task)
	b.stream(t, 2)
	b.rec.setFail(func(ev livesync.Event) error {
		if ev.Change.ID.Name == "o1" {
			panic("host bug")
		}
		return nil
	})
	res, err := task.Run(context.Background())
	if !errors.Is(err, livesync.ErrHandlerPanic) || !strings.Contains(err.Error(), "host bug") {
		t.Fatalf("run: %v", err)
	}
	if res.TokenAfter != tok(1) {
		t.Fatalf("token %q, want before the panicking change", res.TokenAfter)
	}
}

// A change set aside in a fetch that is later fetched again (imprecise
// tokens, the run stopped after it) keeps its side-list entry and attempts.
func TestSetAsideFetchedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{})
	task := b.task(t, func(c *livesync.Config) {
		c.ErrorPolicy.Rules = []livesync.ErrorRule{{Categories: []connector.Category{connector.CategoryNotSent}, Action: livesync.ActionSetAside}}
	})
	mustRun(t, task)
	b.stream(t, 3)
	o1Down, o2Fails := true, true
	b.rec.setFail(func(ev livesync.Event) error {
		switch {
		case ev.Change.ID.Name == "o1" && o1Down:
			return connector.NewError(connector.CategoryNotSent, "target", errors.New("down"))
		case ev.Change.ID.Name == "o2" && o2Fails:
			return errors.New("stop here")
		}
		return nil
	})
	if _, err := task.Run(context.Background()); err == nil {
		t.Fatal("o2 did not stop the run")
	}
	if b.token(t, task) != tok(0) {
		t.Fatal("token moved in a stopped imprecise fetch")
	}
	o2Fails = false
	res := mustRun(t, task) // o1 retried (fails), then the fetch again
	if res.Retried != 1 || res.SetAside != 2 || res.TokenAfter != tok(3) {
		t.Fatalf("second run %+v", res)
	}
	aside, _ := task.SetAsideChanges(context.Background())
	if len(aside) != 1 || aside[0].Attempts != 2 || aside[0].LastError == "" {
		t.Fatalf("side list %+v, want o1's entry with two attempts", aside)
	}
	o1Down = false
	if res := mustRun(t, task); res.Retried != 1 || res.Processed != 1 {
		t.Fatalf("third run %+v", res)
	}
	if aside, _ := task.SetAsideChanges(context.Background()); len(aside) != 0 {
		t.Fatalf("side list %+v", aside)
	}
	b.assertMirror(t)
}

// noUIDs strips the UIDs from every change, as a resource that names
// objects only by their secondary identifier would.
type noUIDs struct{ *memconn.Conn }

func (n noUIDs) FetchChanges(ctx context.Context, cl connector.ObjectClass, from connector.Token, max int) (connector.ChangeBatch, error) {
	b, err := n.Conn.FetchChanges(ctx, cl, from, max)
	for i := range b.Changes {
		b.Changes[i].ID.UID = ""
	}
	return b, err
}

func TestCorrelationByName(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, func(c *livesync.Config) { c.Connector = noUIDs{b.conn} })
	mustRun(t, task)
	a := b.put(t, "alice", "mail", "a@x")
	b.modify(t, a.UID, "mail", "b@x")
	b.modify(t, a.UID, "uid", "alicia") // rename: found by the old name
	b.modify(t, a.UID, "mail", "c@x")
	mustRun(t, task)
	l, _ := b.store.List(context.Background(), shadow.Query{ResourceID: "res", Class: class})
	if len(l) != 1 || l[0].Name != "alicia" || l[0].Attributes.Get("mail") != "c@x" || !l[0].Live() {
		t.Fatalf("shadows %+v", l)
	}
	if err := b.conn.Remove(class, a.UID); err != nil {
		t.Fatal(err)
	}
	mustRun(t, task)
	if l, _ = b.store.List(context.Background(), shadow.Query{ResourceID: "res", Class: class}); len(l) != 1 || !l[0].Dead {
		t.Fatalf("shadows after delete %+v", l)
	}
}

// A shadow the host proposed (its add sent, but not yet known to have
// reached the resource: no UID) is the one live sync finds when the object
// shows up.
func TestCorrelationToProposedShadow(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	ctx := context.Background()
	proposed := &shadow.Shadow{ResourceID: "res", Class: class, Name: "bob", Origin: shadow.OriginAssigned,
		Pending: []shadow.PendingOperation{{ID: 1, Type: shadow.OpRetry, Status: shadow.StatusExecuting, Result: shadow.ResultInProgress, Attempt: 1,
			Delta: connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"uid": {"bob"}}}}}}
	if err := b.store.Create(ctx, proposed); err != nil {
		t.Fatal(err)
	}
	other := &shadow.Shadow{ResourceID: "res", Class: class, Name: "carol", UID: "someone-else", Exists: true, Origin: shadow.OriginAssigned}
	if err := b.store.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	task := b.task(t, func(c *livesync.Config) { c.Kind, c.Intent = "account", "default" })
	mustRun(t, task)
	bob := b.put(t, "bob")
	carol := b.put(t, "carol")
	mustRun(t, task)
	got, err := b.store.Get(ctx, proposed.ID)
	if err != nil || got.UID != bob.UID || !got.Exists || got.Origin != shadow.OriginAssigned || len(got.Pending) != 1 {
		t.Fatalf("proposed shadow after live sync: %+v, %v", got, err)
	}
	evs := b.rec.take()
	if evs[0].Before.Pending[0].Delta.Attributes["uid"][0] = "scribble"; evs[0].After.Pending[0].Delta.Attributes.Get("uid") != "bob" {
		t.Fatal("the handler's before and after share their pending operations")
	}
	if created := evs[1].After; created.Kind != "account" || created.Intent != "default" {
		t.Fatalf("created shadow %+v lacks the task's kind and intent", created)
	}
	// carol's name matches a shadow of another UID: not hers.
	sh := b.shadows(t)
	if sh[carol.UID] == nil || sh[carol.UID].ID == other.ID || sh["someone-else"] == nil {
		t.Fatalf("carol's change went to another object's shadow: %+v", sh)
	}
}

// A set-aside change whose retry fails with an error the policy stops on
// stops the run and stays set aside, its attempt counted.
func TestSetAsideRetryStops(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, func(c *livesync.Config) {
		c.ErrorPolicy.Rules = []livesync.ErrorRule{{Categories: []connector.Category{connector.CategoryNotSent}, Action: livesync.ActionSetAside}}
	})
	mustRun(t, task)
	b.stream(t, 2)
	b.rec.setFail(func(ev livesync.Event) error {
		if ev.Change.ID.Name != "o0" {
			return nil
		}
		if ev.Attempt == 0 {
			return connector.NewError(connector.CategoryNotSent, "target", errors.New("down"))
		}
		return errors.New("broken for good")
	})
	mustRun(t, task)
	b.put(t, "o2")
	res, err := task.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "broken for good") || res.Fetched != 0 {
		t.Fatalf("retry run: %+v, %v", res, err)
	}
	aside, _ := task.SetAsideChanges(context.Background())
	if len(aside) != 1 || aside[0].Attempts != 2 || !strings.Contains(aside[0].LastError, "broken for good") {
		t.Fatalf("side list %+v", aside)
	}
}
