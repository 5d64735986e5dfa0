package compensation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/umbra-idm/umbra/compensation"
	"github.com/umbra-idm/umbra/connector"
)

// call is one call a fake made, in the order all fakes saw them.
type call struct {
	Who          string // target name, or "store"
	Action       string // create/update/delete, or put/delete for the store
	Compensation bool   // IsCompensation(ctx) at the call
}

func (c call) String() string {
	s := c.Who + ":" + c.Action
	if c.Compensation {
		s += "(comp)"
	}
	return s
}

// journal records calls across fakes.
type journal struct {
	mu    sync.Mutex
	calls []call
}

func (j *journal) add(c call) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, c)
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, len(j.calls))
	for i, c := range j.calls {
		out[i] = c.String()
	}
	return out
}

// fakeStore is an in-memory managed store with a hook run after each write
// and an error to inject.
type fakeStore struct {
	j    *journal
	mu   sync.Mutex
	objs map[string]connector.Attributes
	// fail, when set, is returned by the next writes instead of writing.
	fail error
	// after runs after a successful write, with the change the write made
	// (as an IdM server's implicit synchronization would see it).
	after func(ctx context.Context, c compensation.Change) error
}

func newFakeStore(j *journal) *fakeStore {
	return &fakeStore{j: j, objs: map[string]connector.Attributes{}}
}

func (s *fakeStore) Put(ctx context.Context, id string, obj connector.Attributes) error {
	s.j.add(call{Who: "store", Action: "put", Compensation: compensation.IsCompensation(ctx)})
	s.mu.Lock()
	if s.fail != nil {
		s.mu.Unlock()
		return s.fail
	}
	old, had := s.objs[id]
	s.objs[id] = obj.Clone()
	s.mu.Unlock()
	c := compensation.Change{Action: compensation.Update, ID: id, Old: old, New: obj}
	if !had {
		c = compensation.Change{Action: compensation.Create, ID: id, New: obj}
	}
	return s.hook(ctx, c)
}

func (s *fakeStore) Delete(ctx context.Context, id string) error {
	s.j.add(call{Who: "store", Action: "delete", Compensation: compensation.IsCompensation(ctx)})
	s.mu.Lock()
	if s.fail != nil {
		s.mu.Unlock()
		return s.fail
	}
	old, had := s.objs[id]
	delete(s.objs, id)
	s.mu.Unlock()
	if !had {
		return connector.NewError(connector.CategoryNotFound, "delete", fmt.Errorf("no managed object %q", id))
	}
	return s.hook(ctx, compensation.Change{Action: compensation.Delete, ID: id, Old: old})
}

func (s *fakeStore) hook(ctx context.Context, c compensation.Change) error {
	if s.after == nil {
		return nil
	}
	return s.after(ctx, c)
}

// set puts a value without a call record or hook (the host's own write).
func (s *fakeStore) set(id string, obj connector.Attributes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if obj == nil {
		delete(s.objs, id)
		return
	}
	s.objs[id] = obj.Clone()
}

func (s *fakeStore) get(id string) connector.Attributes {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objs[id].Clone()
}

// fakeTarget is an in-memory resource: create and update set the object,
// delete removes it (not found when absent).
type fakeTarget struct {
	name string
	j    *journal
	mu   sync.Mutex
	objs map[string]connector.Attributes
	// fail decides the error of a call (nil: apply it). partial applies
	// the change before failing.
	fail    func(ctx context.Context, c compensation.Change) error
	partial bool
	// during runs at each call, before anything else.
	during func(ctx context.Context, c compensation.Change)
}

func newFakeTarget(name string, j *journal) *fakeTarget {
	return &fakeTarget{name: name, j: j, objs: map[string]connector.Attributes{}}
}

func (t *fakeTarget) Sync(ctx context.Context, c compensation.Change) error {
	t.j.add(call{Who: t.name, Action: c.Action.String(), Compensation: compensation.IsCompensation(ctx)})
	if t.during != nil {
		t.during(ctx, c)
	}
	var err error
	if t.fail != nil {
		err = t.fail(ctx, c)
	}
	if err != nil && !t.partial {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch c.Action {
	case compensation.Create, compensation.Update:
		t.objs[c.ID] = c.New.Clone()
	case compensation.Delete:
		if _, ok := t.objs[c.ID]; !ok && err == nil {
			return connector.NewError(connector.CategoryNotFound, "delete", fmt.Errorf("%s has no %q", t.name, c.ID))
		}
		delete(t.objs, c.ID)
	}
	return err
}

func (t *fakeTarget) set(id string, obj connector.Attributes) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if obj == nil {
		delete(t.objs, id)
		return
	}
	t.objs[id] = obj.Clone()
}

func (t *fakeTarget) get(id string) connector.Attributes {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.objs[id].Clone()
}

func (t *fakeTarget) target() compensation.Target {
	return compensation.Target{Name: t.name, Sync: t.Sync}
}

// failWhen returns a fail func that fails forward calls (revert false) or
// revert calls (revert true) with err.
func failWhen(revert bool, err error) func(context.Context, compensation.Change) error {
	return func(ctx context.Context, _ compensation.Change) error {
		if compensation.IsCompensation(ctx) == revert {
			return err
		}
		return nil
	}
}

// logBuffer is a concurrency-safe buffer for a JSON slog handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the logged records, decoded.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// warnings returns the Warn records whose message contains msg.
func (b *logBuffer) warnings(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range b.records(t) {
		if r["level"] == "WARN" && strings.Contains(r["msg"].(string), msg) {
			out = append(out, r)
		}
	}
	return out
}

// bundle is one test's world: a store, three targets named ldap, hr and
// tickets, a journal and a captured log.
type bundle struct {
	j       *journal
	store   *fakeStore
	targets []*fakeTarget
	logs    *logBuffer
}

func setup(t *testing.T, names ...string) *bundle {
	t.Helper()
	if len(names) == 0 {
		names = []string{"ldap", "hr", "tickets"}
	}
	b := &bundle{j: &journal{}, logs: &logBuffer{}}
	b.store = newFakeStore(b.j)
	for _, n := range names {
		b.targets = append(b.targets, newFakeTarget(n, b.j))
	}
	return b
}

func (b *bundle) config() compensation.Config {
	cfg := compensation.Config{
		Store:  b.store,
		Logger: slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, ft := range b.targets {
		cfg.Targets = append(cfg.Targets, ft.target())
	}
	return cfg
}

func (b *bundle) sync(t *testing.T) *compensation.Synchronizer {
	t.Helper()
	s, err := compensation.New(b.config())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// seed puts value everywhere (store and targets): the state before a change.
func (b *bundle) seed(id string, value connector.Attributes) {
	b.store.set(id, value)
	for _, ft := range b.targets {
		ft.set(id, value)
	}
}

// assertState checks that the store and every target hold want for id
// (nil: no object).
func (b *bundle) assertState(t *testing.T, id string, want connector.Attributes, what string) {
	t.Helper()
	if got := b.store.get(id); !sameObject(got, want) {
		t.Errorf("%s: store holds %v, want %v", what, got, want)
	}
	for _, ft := range b.targets {
		if got := ft.get(id); !sameObject(got, want) {
			t.Errorf("%s: target %s holds %v, want %v", what, ft.name, got, want)
		}
	}
}

func sameObject(a, b connector.Attributes) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return a.Equal(b)
}

func outcomes(r compensation.Report) map[string]compensation.Outcome {
	out := map[string]compensation.Outcome{}
	for _, t := range r.Targets {
		out[t.Name] = t.Outcome
	}
	return out
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

var (
	errPolicy = connector.NewError(connector.CategoryPolicy, "modify", errors.New("hr rejects the title"))
	errDown   = connector.NewError(connector.CategoryNotSent, "modify", errors.New("connection refused"))
)
