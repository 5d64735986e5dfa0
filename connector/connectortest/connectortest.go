// Package connectortest is the conformance suite every umbra connector
// runs: one call, Run, from the connector's own tests. A connector is not
// production ready until it passes. Capabilities adapt the suite to what a
// resource can promise; Harness gives it what it needs to make objects.
//
//	func TestConformance(t *testing.T) {
//		connectortest.Run(t, connectortest.Capabilities{Search: true, LiveSync: true, ...},
//			connectortest.Harness{New: ..., Class: "account", NewAttributes: ..., ...})
//	}
//
// Every case runs in parallel with the others and names its objects
// uniquely, so the suite may run against one shared resource: a case never
// assumes that it is alone on the resource or in its change stream.
package connectortest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// Capabilities say what the connector under test can promise. A false
// field skips (or relaxes) the cases that need the capability; declare
// every capability the connector has, or the suite proves less.
type Capabilities struct {
	// Async: writes may return Result.Async; the suite finishes them with
	// Harness.CompleteAsync and reads the outcome with OperationStatus.
	// The connector MUST implement connector.AsyncOperator.
	Async bool
	// ControlBytes: names and values may hold NUL and other control
	// bytes and invalid UTF-8, and they round-trip exactly.
	ControlBytes bool
	// CreateOrModify: the change stream may report ChangeCreateOrModify
	// (and may fold several changes of one object into one) instead of
	// separate creates and modifies, as a modifyTimestamp search does.
	CreateOrModify bool
	// LiveSync: the connector implements connector.LiveSyncer.
	LiveSync bool
	// LiveSyncDeletes: the change stream reports deletes.
	LiveSyncDeletes bool
	// PreciseTokens: every change carries its own token and processing can
	// resume after any change. Checked against LiveSyncer.PreciseTokens.
	PreciseTokens bool
	// Rename: a modify that replaces Harness.NamingAttribute renames the
	// object and reports the new Name.
	Rename bool
	// Search: the connector implements connector.Searcher.
	Search bool
}

// Harness is what the suite needs from the connector's test.
type Harness struct {
	// Class is the object class the suite creates objects of. Required.
	Class connector.ObjectClass
	// CompleteAsync makes the resource finish the asynchronous operation
	// ref of c (successfully or not, as the resource decides). It returns
	// an error only when it could not. Required with Capabilities.Async.
	CompleteAsync func(c connector.Connector, ref string) error
	// ModifiableAttribute is a single-valued attribute the suite may
	// replace, delete and fill with hostile values. Required.
	ModifiableAttribute string
	// MultiValuedAttribute is an attribute that holds several values, for
	// the value add/delete cases. Empty: the resource has none, and those
	// cases use ModifiableAttribute with one value.
	MultiValuedAttribute string
	// NamingAttribute is the attribute from which the resource derives an
	// object's Name. Required.
	NamingAttribute string
	// New returns the connector under test. It is called once per case, in
	// parallel; the connectors it returns may share one resource. Clean up
	// with t.Cleanup. Required.
	New func(t *testing.T) connector.Connector
	// NewAttributes returns valid attributes for a fresh object whose
	// NamingAttribute value is unique for i (the suite never passes the
	// same i twice in one process). The suite may replace the values of
	// NamingAttribute and ModifiableAttribute. Required.
	NewAttributes func(i int) connector.Attributes
	// SyncTimeout is how long the suite waits for a change to show in the
	// change stream. Default 10 s.
	SyncTimeout time.Duration
}

func (h Harness) validate(caps Capabilities) error {
	var errs []error
	if h.New == nil {
		errs = append(errs, errors.New("Harness.New is nil"))
	}
	if h.Class == "" {
		errs = append(errs, errors.New("Harness.Class is empty"))
	}
	if h.NewAttributes == nil {
		errs = append(errs, errors.New("Harness.NewAttributes is nil"))
	}
	if h.NamingAttribute == "" {
		errs = append(errs, errors.New("Harness.NamingAttribute is empty"))
	}
	if h.ModifiableAttribute == "" {
		errs = append(errs, errors.New("Harness.ModifiableAttribute is empty"))
	}
	if caps.Async && h.CompleteAsync == nil {
		errs = append(errs, errors.New("Capabilities.Async is set but Harness.CompleteAsync is nil"))
	}
	if caps.PreciseTokens && !caps.LiveSync {
		errs = append(errs, errors.New("Capabilities.PreciseTokens is set without LiveSync"))
	}
	return errors.Join(errs...)
}

// counter makes object names unique within the process; its start differs
// between runs so that leftovers on a persistent resource do not collide.
var counter atomic.Int64

func init() { counter.Store(time.Now().UnixNano() / 1000 % 1_000_000_000 * 1000) }

// Run runs the whole suite against the connector h.New makes, as parallel
// subtests of t.
func Run(t *testing.T, caps Capabilities, h Harness) {
	t.Helper()
	if err := h.validate(caps); err != nil {
		t.Fatalf("connectortest: bad harness: %v", err)
	}
	if h.SyncTimeout <= 0 {
		h.SyncTimeout = 10 * time.Second
	}
	for _, tc := range cases {
		if tc.needs != nil && !tc.needs(caps) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSuite(t, caps, h)
			tc.run(s)
		})
	}
}

type testCase struct {
	name  string
	needs func(Capabilities) bool
	run   func(*suite)
}

var cases = []testCase{
	{name: "AddGet", run: testAddGet},
	{name: "AddDuplicate", run: testAddDuplicate},
	{name: "AddWithoutNamingAttribute", run: testAddWithoutNaming},
	{name: "ConcurrentAddSameName", needs: func(c Capabilities) bool { return !c.Async }, run: testConcurrentAdd},
	{name: "ModifyValues", run: testModifyValues},
	{name: "Missing", run: testMissing},
	{name: "DeleteThenGet", run: testDeleteThenGet},
	{name: "Rename", needs: func(c Capabilities) bool { return c.Rename }, run: testRename},
	{name: "Search", needs: func(c Capabilities) bool { return c.Search }, run: testSearch},
	{name: "SearchPaging", needs: func(c Capabilities) bool { return c.Search }, run: testSearchPaging},
	{name: "HostileValues", run: testHostile},
	{name: "HostileSearch", needs: func(c Capabilities) bool { return c.Search }, run: testHostileSearch},
	{name: "LiveSyncChanges", needs: func(c Capabilities) bool { return c.LiveSync }, run: testLiveSyncChanges},
	{name: "LiveSyncPreciseResume", needs: func(c Capabilities) bool { return c.LiveSync && c.PreciseTokens }, run: testPreciseResume},
	{name: "LiveSyncBatchToken", needs: func(c Capabilities) bool { return c.LiveSync }, run: testBatchToken},
	{name: "LiveSyncBadToken", needs: func(c Capabilities) bool { return c.LiveSync }, run: testBadToken},
	{name: "ContextCancelled", run: testCancelled},
	{name: "Test", run: testTester},
	{name: "AsyncUnknownRef", needs: func(c Capabilities) bool { return c.Async }, run: testAsyncUnknown},
}

// suite is one case's view of the connector under test.
type suite struct {
	t    *testing.T
	caps Capabilities
	h    Harness
	c    connector.Connector
	ctx  context.Context
}

func newSuite(t *testing.T, caps Capabilities, h Harness) *suite {
	c := h.New(t)
	if c == nil {
		t.Fatal("connectortest: Harness.New returned nil")
	}
	s := &suite{t: t, caps: caps, h: h, c: c, ctx: t.Context()}
	if caps.Search {
		if _, ok := c.(connector.Searcher); !ok {
			t.Fatalf("Capabilities.Search is set but %T is not a connector.Searcher", c)
		}
	}
	if caps.LiveSync {
		ls, ok := c.(connector.LiveSyncer)
		if !ok {
			t.Fatalf("Capabilities.LiveSync is set but %T is not a connector.LiveSyncer", c)
		}
		if ls.PreciseTokens() != caps.PreciseTokens {
			t.Fatalf("Capabilities.PreciseTokens is %v but %T.PreciseTokens() is %v", caps.PreciseTokens, c, ls.PreciseTokens())
		}
	}
	if caps.Async {
		if _, ok := c.(connector.AsyncOperator); !ok {
			t.Fatalf("Capabilities.Async is set but %T is not a connector.AsyncOperator", c)
		}
	}
	return s
}

// attrs returns fresh attributes and the naming value they carry.
func (s *suite) attrs() (connector.Attributes, string) {
	s.t.Helper()
	i := int(counter.Add(1))
	a := s.h.NewAttributes(i).Clone()
	name := a.Get(s.h.NamingAttribute)
	if name == "" {
		s.t.Fatalf("Harness.NewAttributes(%d) has no %q value", i, s.h.NamingAttribute)
	}
	return a, name
}

// uniq returns a suffix unique in the process.
func uniq() string { return fmt.Sprintf("%d", counter.Add(1)) }

// finish waits for the asynchronous operation ref and returns its outcome.
func (s *suite) finish(ref string) (connector.Identifiers, error) {
	s.t.Helper()
	if !s.caps.Async {
		s.t.Fatalf("write returned Result.Async %q but Capabilities.Async is not set", ref)
	}
	if err := s.h.CompleteAsync(s.c, ref); err != nil {
		s.t.Fatalf("Harness.CompleteAsync(%q): %v", ref, err)
	}
	ao := s.c.(connector.AsyncOperator)
	deadline := time.Now().Add(s.h.SyncTimeout)
	for {
		st, err := ao.OperationStatus(s.ctx, ref)
		if err != nil {
			s.t.Fatalf("OperationStatus(%q): %v", ref, err)
		}
		switch st.State {
		case connector.AsyncDone:
			return st.ID, nil
		case connector.AsyncFailed:
			if st.Err == nil {
				s.t.Fatalf("OperationStatus(%q) failed with a nil Err", ref)
			}
			return connector.Identifiers{}, st.Err
		case connector.AsyncInProgress:
		default:
			s.t.Fatalf("OperationStatus(%q) has unknown state %v", ref, st.State)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("operation %q still in progress after %v", ref, s.h.SyncTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *suite) add(a connector.Attributes) (connector.Identifiers, error) {
	s.t.Helper()
	res, err := s.c.Add(s.ctx, s.h.Class, a)
	if err == nil && res.Async != "" {
		return s.finish(res.Async)
	}
	return res.ID, err
}

func (s *suite) mustAdd(a connector.Attributes) connector.Identifiers {
	s.t.Helper()
	id, err := s.add(a)
	if err != nil {
		s.t.Fatalf("Add(%q): %v", a.Get(s.h.NamingAttribute), err)
	}
	if id.UID == "" || id.Name == "" {
		s.t.Fatalf("Add(%q) returned identifiers %+v; want both UID and Name", a.Get(s.h.NamingAttribute), id)
	}
	return id
}

func (s *suite) modify(id connector.Identifiers, changes ...connector.AttributeDelta) (connector.Identifiers, error) {
	s.t.Helper()
	res, err := s.c.Modify(s.ctx, s.h.Class, id, changes)
	if err == nil && res.Async != "" {
		res.ID, err = s.finish(res.Async)
	}
	if err == nil && res.ID.IsZero() {
		res.ID = id
	}
	return res.ID, err
}

func (s *suite) mustModify(id connector.Identifiers, changes ...connector.AttributeDelta) connector.Identifiers {
	s.t.Helper()
	nid, err := s.modify(id, changes...)
	if err != nil {
		s.t.Fatalf("Modify(%+v, %v): %v", id, changes, err)
	}
	if nid.UID != "" && id.UID != "" && nid.UID != id.UID {
		s.t.Fatalf("Modify(%+v) changed the UID to %q", id, nid.UID)
	}
	return nid
}

func (s *suite) delete(id connector.Identifiers) error {
	s.t.Helper()
	res, err := s.c.Delete(s.ctx, s.h.Class, id)
	if err == nil && res.Async != "" {
		_, err = s.finish(res.Async)
	}
	return err
}

func (s *suite) mustDelete(id connector.Identifiers) {
	s.t.Helper()
	if err := s.delete(id); err != nil {
		s.t.Fatalf("Delete(%+v): %v", id, err)
	}
}

func (s *suite) mustGet(id connector.Identifiers) connector.Object {
	s.t.Helper()
	o, err := s.c.Get(s.ctx, s.h.Class, id)
	if err != nil {
		s.t.Fatalf("Get(%+v): %v", id, err)
	}
	if id.UID != "" && o.ID.UID != id.UID {
		s.t.Fatalf("Get(%+v) returned UID %q", id, o.ID.UID)
	}
	if o.Class != "" && o.Class != s.h.Class {
		s.t.Fatalf("Get(%+v) returned class %q; want %q", id, o.Class, s.h.Class)
	}
	return o
}

// wantAttrs fails unless got holds exactly want's value sets for every
// attribute want names (extra attributes in got are the resource's own).
func (s *suite) wantAttrs(what string, got, want connector.Attributes) {
	s.t.Helper()
	for _, name := range unionNames(want) {
		if !(connector.Attributes{name: want[name]}).Equal(connector.Attributes{name: got[name]}) {
			s.t.Errorf("%s: attribute %q = %q; want %q", what, name, got[name], want[name])
		}
	}
}

func unionNames(a connector.Attributes) []string {
	names := make([]string, 0, len(a))
	for k := range a {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func (s *suite) wantCategory(what string, err error, c connector.Category) {
	s.t.Helper()
	if err == nil {
		s.t.Errorf("%s: no error; want %s", what, c)
		return
	}
	if !errors.Is(err, c.Sentinel()) || connector.Classify(err) != c {
		s.t.Errorf("%s: error %v (category %s); want category %s", what, err, connector.Classify(err), c)
	}
}
