package livesync_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/internal/clock"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

const class connector.ObjectClass = "account"

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeTokens is a TokenStore and FencedTokenStore for the engine's tests,
// with counters and an injectable fence.
type fakeTokens struct {
	mu     sync.Mutex
	tokens map[livesync.TokenKey]connector.Token
	aside  map[livesync.TokenKey][]livesync.SetAsideChange
	cas    int
	// fence, when set, decides whether a fenced write's lease holds.
	fence func(l shadow.Lease) bool
	// failCAS, when set, is returned by the next CAS.
	failCAS error
}

func newFakeTokens() *fakeTokens {
	return &fakeTokens{tokens: map[livesync.TokenKey]connector.Token{}, aside: map[livesync.TokenKey][]livesync.SetAsideChange{}}
}

func (f *fakeTokens) LoadToken(_ context.Context, k livesync.TokenKey) (connector.Token, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[k]
	return t, ok, nil
}

func (f *fakeTokens) CompareAndSwapToken(_ context.Context, k livesync.TokenKey, old, next connector.Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failCAS; err != nil {
		f.failCAS = nil
		return err
	}
	if f.tokens[k] != old {
		return livesync.ErrTokenConflict
	}
	f.tokens[k] = next
	f.cas++
	return nil
}

func (f *fakeTokens) CompareAndSwapTokenFenced(ctx context.Context, k livesync.TokenKey, old, next connector.Token, l shadow.Lease) error {
	f.mu.Lock()
	fence := f.fence
	f.mu.Unlock()
	if fence != nil && !fence(l) {
		return shadow.ErrLeaseLost
	}
	return f.CompareAndSwapToken(ctx, k, old, next)
}

func (f *fakeTokens) SetAside(_ context.Context, k livesync.TokenKey, c livesync.SetAsideChange) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.aside[k]
	for i := range l {
		if l[i].ID == c.ID {
			l[i] = c
			return nil
		}
	}
	f.aside[k] = append(l, c)
	return nil
}

func (f *fakeTokens) SetAsideChanges(_ context.Context, k livesync.TokenKey) ([]livesync.SetAsideChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.aside[k]), nil
}

func (f *fakeTokens) RemoveSetAside(_ context.Context, k livesync.TokenKey, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aside[k] = slices.DeleteFunc(f.aside[k], func(c livesync.SetAsideChange) bool { return c.ID == id })
	return nil
}

func (f *fakeTokens) casCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cas
}

// recorder keeps the events the handler saw.
type recorder struct {
	mu     sync.Mutex
	events []livesync.Event
	// fail, when set, decides the handler's error for an event.
	fail func(ev livesync.Event) error
}

func (r *recorder) handle(_ context.Context, ev livesync.Event) error {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	var err error
	if fail != nil {
		err = fail(ev)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.events = append(r.events, ev)
	}
	return err
}

func (r *recorder) setFail(f func(ev livesync.Event) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = f
}

// names returns the names of the objects of the events seen, in order, and
// forgets them.
func (r *recorder) take() []livesync.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func names(evs []livesync.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Change.ID.Name
	}
	return out
}

type bundle struct {
	conn   *memconn.Conn
	store  *memstore.Store
	tokens livesync.TokenStore
	// fake is a token store with counters and a fence; tests that need
	// them set tokens to it before making tasks.
	fake  *fakeTokens
	clock *clock.Fake
	rec   *recorder
}

func setup(t *testing.T, opts memconn.Options) *bundle {
	t.Helper()
	clk := clock.NewFake(t0)
	opts.Clock = clk
	return &bundle{
		conn:   memconn.New(opts),
		store:  memstore.New(memstore.Options{Clock: clk}),
		tokens: livesync.NewMemoryTokenStore(),
		fake:   newFakeTokens(),
		clock:  clk,
		rec:    &recorder{},
	}
}

func (b *bundle) config() livesync.Config {
	return livesync.Config{
		ResourceID: "res",
		Class:      class,
		Connector:  b.conn,
		Store:      b.store,
		Tokens:     b.tokens,
		Handler:    b.rec.handle,
		Clock:      b.clock,
	}
}

func (b *bundle) task(t *testing.T, mod func(*livesync.Config)) *livesync.Task {
	t.Helper()
	cfg := b.config()
	if mod != nil {
		mod(&cfg)
	}
	task, err := livesync.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return task
}

func (b *bundle) put(t *testing.T, name string, attrs ...string) connector.Identifiers {
	t.Helper()
	a := connector.Attributes{"uid": {name}}
	for i := 0; i+1 < len(attrs); i += 2 {
		a[attrs[i]] = append(a[attrs[i]], attrs[i+1])
	}
	id, err := b.conn.Put(class, a)
	if err != nil {
		t.Fatalf("Put %s: %v", name, err)
	}
	return id
}

func (b *bundle) modify(t *testing.T, uid, attr string, values ...string) {
	t.Helper()
	if _, err := b.conn.ModifyDirect(class, uid, connector.AttributeDelta{Op: connector.Replace, Name: attr, Values: values}); err != nil {
		t.Fatalf("ModifyDirect %s: %v", uid, err)
	}
}

func (b *bundle) token(t *testing.T, task *livesync.Task) connector.Token {
	t.Helper()
	tok, _, err := task.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (b *bundle) latest(t *testing.T) connector.Token {
	t.Helper()
	tok, err := b.conn.LatestToken(context.Background(), class)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// shadows returns the live shadows by UID.
func (b *bundle) shadows(t *testing.T) map[string]*shadow.Shadow {
	t.Helper()
	l, err := b.store.List(context.Background(), shadow.Query{ResourceID: "res", Class: class})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*shadow.Shadow{}
	for _, s := range l {
		if s.Live() {
			if _, dup := out[s.UID]; dup {
				t.Fatalf("two live shadows of uid %s", s.UID)
			}
			out[s.UID] = s
		}
	}
	return out
}

// assertMirror checks that the live shadows are exactly the resource's
// objects, with their attributes and names.
func (b *bundle) assertMirror(t *testing.T) {
	t.Helper()
	assertMirror(t, b.shadows(t), b.conn.Objects(class))
}

func assertMirror(t *testing.T, sh map[string]*shadow.Shadow, objs []connector.Object) {
	t.Helper()
	if len(sh) != len(objs) {
		t.Errorf("%d live shadows, resource holds %d objects", len(sh), len(objs))
	}
	for _, o := range objs {
		s := sh[o.ID.UID]
		switch {
		case s == nil:
			t.Errorf("no live shadow of %s (%s)", o.ID.UID, o.ID.Name)
		case s.Name != o.ID.Name:
			t.Errorf("shadow of %s has name %q, resource %q", o.ID.UID, s.Name, o.ID.Name)
		case !s.Attributes.Equal(o.Attributes):
			t.Errorf("shadow of %s has attributes %v, resource %v", o.ID.UID, s.Attributes, o.Attributes)
		case s.Origin != shadow.OriginDiscovered:
			t.Errorf("shadow of %s has origin %s", o.ID.UID, s.Origin)
		}
	}
}

func mustRun(t *testing.T, task *livesync.Task) livesync.Result {
	t.Helper()
	res, err := task.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func tok(n int) connector.Token { return connector.Token(fmt.Sprint(n)) }
