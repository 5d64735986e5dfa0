// Package memconn is an in-memory resource: a connector.Connector that keeps
// its objects in maps, with a change log for live sync, asynchronous
// operations, and fault injection. It is the workhorse of engine tests and
// examples, and it passes the connector conformance suite (connectortest)
// like every other connector.
//
// # Objects
//
// Objects live per object class. The resource assigns UIDs ("u-000001", ...)
// and derives an object's Name from its naming attribute (Options), which an
// add MUST carry with exactly one non-empty value. A modify that changes the
// naming attribute renames the object. Values are kept as given (any bytes),
// as value sets: Get returns each attribute's values sorted.
//
// # Live sync
//
// Every write — through the Connector methods or through the direct
// helpers (Put, Set, ModifyDirect, Remove) that act "behind the engine's
// back" — appends a Change to the class's change log. Tokens are decimal
// positions in that log. FetchChanges costs in proportion to the batch it
// returns, not to the log.
//
// # Faults
//
// Down/Up, FailNext, FailNextAfterApply, FailNextOp, Throttle and
// Options.Latency make the resource misbehave the way real ones do. Faults
// apply to the Connector, Searcher, LiveSyncer, AsyncOperator and Tester
// methods (the "calls"), never to the direct helpers. Every call is counted
// (Calls, CallCounts), including the ones that fail.
//
// A Conn is safe for concurrent use.
package memconn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/attrenc"
)

// DefaultNamingAttribute is the naming attribute of every class that
// Options.NamingAttribute and Options.ClassNamingAttributes leave unset.
const DefaultNamingAttribute = "uid"

// DefaultMaxFetch is how many changes FetchChanges returns when its caller
// leaves the choice to the connector (max ≤ 0) and Options.MaxFetch is zero.
const DefaultMaxFetch = 1000

// DefaultPageSize is the search page size when SearchOptions.PageSize is zero.
const DefaultPageSize = 100

// Options configure a Conn. The zero value is a synchronous resource with
// imprecise tokens, naming attribute "uid", and no latency.
type Options struct {
	// Async makes writes asynchronous: Add, Modify and Delete check their
	// arguments (schema errors come at once), record the operation and
	// return Result.Async with an empty Result.ID; the operation takes
	// effect only when the test calls CompleteAsync (or fails with
	// FailAsync), and OperationStatus then reports its identifiers or its
	// error. SetAsync switches the mode later. Default false.
	Async bool
	// ClassNamingAttributes names the naming attribute of particular
	// classes; other classes use NamingAttribute. Default none.
	ClassNamingAttributes map[connector.ObjectClass]string
	// Clock is the time source for throttling. Default: the wall clock.
	Clock connector.Clock
	// Latency is slept (in real time, honouring ctx) at the start of every
	// call, to make benchmarks and timeouts realistic. Default 0.
	Latency time.Duration
	// MaxFetch is how many changes FetchChanges returns when its max is
	// ≤ 0. Default DefaultMaxFetch.
	MaxFetch int
	// NamingAttribute is the attribute whose value is an object's Name, for
	// every class not in ClassNamingAttributes. Default
	// DefaultNamingAttribute ("uid").
	NamingAttribute string
	// OmitChangeAttributes leaves Change.Object nil in every change, so
	// that a live-sync engine must Get the object. Default false.
	OmitChangeAttributes bool
	// PreciseTokens gives every change its own token (the decimal position
	// after it). When false, changes carry no token and only
	// ChangeBatch.Token is a place to resume. Default false.
	PreciseTokens bool
}

// CallKind names a kind of call, for counting and for FailNextOp.
type CallKind string

// The call kinds. Every Connector, Searcher, LiveSyncer, AsyncOperator and
// Tester method is one of these (PreciseTokens, which asks nothing of the
// resource, is not a call).
const (
	CallAdd    CallKind = "add"
	CallModify CallKind = "modify"
	CallDelete CallKind = "delete"
	CallGet    CallKind = "get"
	CallSearch CallKind = "search"
	// CallFetch is FetchChanges.
	CallFetch CallKind = "fetch"
	// CallLatestToken is LatestToken.
	CallLatestToken CallKind = "token"
	CallTest        CallKind = "test"
	// CallStatus is OperationStatus.
	CallStatus CallKind = "status"
)

// CallKinds lists every call kind.
var CallKinds = []CallKind{CallAdd, CallModify, CallDelete, CallGet, CallSearch, CallFetch, CallLatestToken, CallTest, CallStatus}

func kindIndex(k CallKind) int {
	for i, c := range CallKinds {
		if c == k {
			return i
		}
	}
	return -1
}

func (k CallKind) write() bool { return k == CallAdd || k == CallModify || k == CallDelete }

// ErrInjected is the underlying error of every fault that FailNext,
// FailNextAfterApply, Down and Throttle inject, so that a test can tell an
// injected failure from a real one with errors.Is.
var ErrInjected = errors.New("memconn: injected fault")

// Conn is an in-memory resource. Create it with New. It implements
// connector.Connector, Searcher, LiveSyncer, AsyncOperator and Tester, and is
// safe for concurrent use.
type Conn struct {
	opts  Options
	clock connector.Clock

	calls [9]atomic.Int64

	mu      sync.Mutex
	classes map[connector.ObjectClass]*class
	nextUID uint64
	// scratch is the change log's encoding buffer (under mu).
	scratch []byte
	// faults
	down          bool
	throttleUntil time.Time
	failNext      int
	failNextCat   connector.Category
	failAfter     int
	failOp        map[CallKind]*opFault
	// async
	async    bool
	nextRef  uint64
	asyncOps map[string]*asyncOp
	pending  []string
}

type opFault struct {
	n   int
	err error
}

type class struct {
	objects map[string]*object // by UID
	byName  map[string]*object
	order   []*object // creation order (= UID order); may hold removed objects
	removed int       // removed objects still in order
	log     []logEntry
}

type object struct {
	seq     uint64
	uid     string
	name    string
	attrs   connector.Attributes // never modified in place: replaced on change
	removed bool
}

// logEntry is one change, stored compactly; its token is its position + 1.
type logEntry struct {
	typ     connector.ChangeType
	uid     string
	name    string
	oldName string
	// attrs is the object after the change, encoded (internal/attrenc):
	// a long log holds no maps for the garbage collector to scan. Empty
	// for a delete or when omitted.
	attrs string
}

// New returns an empty resource configured by opts.
func New(opts Options) *Conn {
	if opts.NamingAttribute == "" {
		opts.NamingAttribute = DefaultNamingAttribute
	}
	if opts.MaxFetch <= 0 {
		opts.MaxFetch = DefaultMaxFetch
	}
	c := &Conn{
		opts:     opts,
		clock:    opts.Clock,
		classes:  map[connector.ObjectClass]*class{},
		failOp:   map[CallKind]*opFault{},
		asyncOps: map[string]*asyncOp{},
		async:    opts.Async,
	}
	if c.clock == nil {
		c.clock = connector.RealClock{}
	}
	c.opts.ClassNamingAttributes = make(map[connector.ObjectClass]string, len(opts.ClassNamingAttributes))
	for k, v := range opts.ClassNamingAttributes {
		c.opts.ClassNamingAttributes[k] = v
	}
	return c
}

var (
	_ connector.Connector     = (*Conn)(nil)
	_ connector.Searcher      = (*Conn)(nil)
	_ connector.LiveSyncer    = (*Conn)(nil)
	_ connector.AsyncOperator = (*Conn)(nil)
	_ connector.Tester        = (*Conn)(nil)
)

// NamingAttribute returns the naming attribute of class.
func (c *Conn) NamingAttribute(cl connector.ObjectClass) string {
	if n, ok := c.opts.ClassNamingAttributes[cl]; ok && n != "" {
		return n
	}
	return c.opts.NamingAttribute
}

func (c *Conn) class(cl connector.ObjectClass) *class {
	k := c.classes[cl]
	if k == nil {
		k = &class{objects: map[string]*object{}, byName: map[string]*object{}}
		c.classes[cl] = k
	}
	return k
}

// ---- calls and faults ----

// begin counts a call of kind, sleeps the latency and checks the context and
// the injected faults. A non-nil error means the call fails with it.
// afterApply reports a write that must be applied and then fail with
// CategoryOutcomeUnknown.
func (c *Conn) begin(ctx context.Context, kind CallKind) (afterApply bool, err error) {
	c.calls[kindIndex(kind)].Add(1)
	op := string(kind)
	if err := ctx.Err(); err != nil {
		return false, connector.NewError(connector.CategoryNotSent, op, err)
	}
	if d := c.opts.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, connector.NewError(connector.CategoryNotSent, op, ctx.Err())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return false, connector.NewError(connector.CategoryNotSent, op, fmt.Errorf("resource is down: %w", ErrInjected))
	}
	if !c.throttleUntil.IsZero() {
		if until := c.throttleUntil; c.clock.Now().Before(until) {
			return false, &connector.Error{Category: connector.CategoryThrottled, Op: op, RetryAfter: until,
				Err: fmt.Errorf("throttled until %s: %w", until.Format(time.RFC3339Nano), ErrInjected)}
		}
		c.throttleUntil = time.Time{}
	}
	if f := c.failOp[kind]; f != nil && f.n > 0 {
		f.n--
		if f.n == 0 {
			delete(c.failOp, kind)
		}
		return false, f.err
	}
	if c.failNext > 0 {
		c.failNext--
		return false, connector.NewError(c.failNextCat, op, fmt.Errorf("injected %s failure: %w", c.failNextCat, ErrInjected))
	}
	if kind.write() && c.failAfter > 0 {
		c.failAfter--
		return true, nil
	}
	return false, nil
}

func afterApplyError(op string) error {
	return connector.NewError(connector.CategoryOutcomeUnknown, op, fmt.Errorf("connection lost after the request was sent: %w", ErrInjected))
}

// Down makes every call fail with CategoryNotSent until Up.
func (c *Conn) Down() {
	c.mu.Lock()
	c.down = true
	c.mu.Unlock()
}

// Up ends Down.
func (c *Conn) Up() {
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
}

// IsDown reports whether the resource is down.
func (c *Conn) IsDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

// FailNext makes the next n calls, of any kind, fail with category cat
// without doing anything. It replaces an earlier FailNext; n ≤ 0 clears it.
// For a failure that happens after a write took effect, use
// FailNextAfterApply.
func (c *Conn) FailNext(n int, cat connector.Category) {
	c.mu.Lock()
	c.failNext, c.failNextCat = max(n, 0), cat
	c.mu.Unlock()
}

// FailNextAfterApply makes the next n writes (Add, Modify, Delete; other
// calls are not affected and do not count) take effect and then fail with
// CategoryOutcomeUnknown: the timeout after the request went out. In Async
// mode the operation is recorded (its reference is lost with the reply). A
// write that fails on its own (a taken name, a missing object) reports its
// own error and still uses up one of the n. It replaces an earlier
// FailNextAfterApply; n ≤ 0 clears it.
func (c *Conn) FailNextAfterApply(n int) {
	c.mu.Lock()
	c.failAfter = max(n, 0)
	c.mu.Unlock()
}

// FailNextOp makes the next n calls of kind fail with err (returned as
// given; nil means a CategoryGeneric error) without doing anything. It
// replaces an earlier FailNextOp for kind; n ≤ 0 clears it. Per-kind faults
// are used before FailNext's.
func (c *Conn) FailNextOp(kind CallKind, n int, err error) {
	if kindIndex(kind) < 0 {
		panic(fmt.Sprintf("memconn: FailNextOp of unknown call kind %q", kind))
	}
	if err == nil {
		err = connector.NewError(connector.CategoryGeneric, string(kind), fmt.Errorf("injected failure: %w", ErrInjected))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n <= 0 {
		delete(c.failOp, kind)
		return
	}
	c.failOp[kind] = &opFault{n: n, err: err}
}

// Throttle makes every call fail with CategoryThrottled and RetryAfter until
// while the clock shows a time before until. The zero time clears it.
func (c *Conn) Throttle(until time.Time) {
	c.mu.Lock()
	c.throttleUntil = until
	c.mu.Unlock()
}

// Calls returns how many calls of kind were made, failed ones included.
func (c *Conn) Calls(kind CallKind) int {
	i := kindIndex(kind)
	if i < 0 {
		return 0
	}
	return int(c.calls[i].Load())
}

// CallCounts returns the number of calls of every kind made so far (kinds
// never called included, with 0).
func (c *Conn) CallCounts() map[CallKind]int {
	out := make(map[CallKind]int, len(CallKinds))
	for i, k := range CallKinds {
		out[k] = int(c.calls[i].Load())
	}
	return out
}

// ResetCalls sets every call counter to zero.
func (c *Conn) ResetCalls() {
	for i := range c.calls {
		c.calls[i].Store(0)
	}
}

// ---- object operations (callers hold c.mu) ----

func schemaErr(op string, format string, args ...any) error {
	return connector.NewError(connector.CategorySchema, op, fmt.Errorf(format, args...))
}

func notFound(op string, cl connector.ObjectClass, id connector.Identifiers) error {
	return connector.NewError(connector.CategoryNotFound, op, fmt.Errorf("no %s object %s", cl, describeID(id)))
}

func describeID(id connector.Identifiers) string {
	if id.UID != "" {
		return fmt.Sprintf("with UID %q", id.UID)
	}
	return fmt.Sprintf("named %q", id.Name)
}

// nameOf returns the Name that attrs give an object of class cl.
func (c *Conn) nameOf(op string, cl connector.ObjectClass, attrs connector.Attributes) (string, error) {
	na := c.NamingAttribute(cl)
	vals := attrs[na]
	switch {
	case len(vals) == 0:
		return "", schemaErr(op, "%s object has no naming attribute %q", cl, na)
	case len(vals) > 1:
		return "", schemaErr(op, "%s object has %d values of naming attribute %q; it takes one", cl, len(vals), na)
	case vals[0] == "":
		return "", schemaErr(op, "%s object has an empty naming attribute %q", cl, na)
	}
	return vals[0], nil
}

func checkAttributes(op string, attrs connector.Attributes) error {
	if err := (connector.Delta{Type: connector.DeltaAdd, Attributes: attrs}).Validate(); err != nil {
		return connector.NewError(connector.CategorySchema, op, err)
	}
	return nil
}

func checkChanges(op string, changes []connector.AttributeDelta) error {
	if err := (connector.Delta{Type: connector.DeltaModify, Changes: changes}).Validate(); err != nil {
		return connector.NewError(connector.CategorySchema, op, err)
	}
	return nil
}

func (c *Conn) find(cl connector.ObjectClass, id connector.Identifiers) *object {
	k := c.classes[cl]
	if k == nil {
		return nil
	}
	if id.UID != "" {
		return k.objects[id.UID]
	}
	if id.Name != "" {
		return k.byName[id.Name]
	}
	return nil
}

// record appends e, with the object's attributes attrs after the change,
// to k's change log.
func (c *Conn) record(k *class, e logEntry, attrs connector.Attributes) {
	if !c.opts.OmitChangeAttributes {
		e.attrs = attrenc.EncodeBuf(attrs, &c.scratch)
	}
	k.log = append(k.log, e)
}

func (c *Conn) addLocked(op string, cl connector.ObjectClass, attrs connector.Attributes) (connector.Identifiers, error) {
	if err := checkAttributes(op, attrs); err != nil {
		return connector.Identifiers{}, err
	}
	attrs = normalize(attrs)
	name, err := c.nameOf(op, cl, attrs)
	if err != nil {
		return connector.Identifiers{}, err
	}
	k := c.class(cl)
	if o := k.byName[name]; o != nil {
		existing := connector.Identifiers{UID: o.uid, Name: o.name}
		return connector.Identifiers{}, &connector.Error{Category: connector.CategoryAlreadyExists, Op: op, Existing: &existing,
			Err: fmt.Errorf("a %s object named %q exists (UID %q)", cl, name, o.uid)}
	}
	c.nextUID++
	o := &object{seq: c.nextUID, uid: formatUID(c.nextUID), name: name, attrs: attrs}
	k.objects[o.uid] = o
	k.byName[name] = o
	k.order = append(k.order, o)
	c.record(k, logEntry{typ: connector.ChangeCreate, uid: o.uid, name: name}, attrs)
	return connector.Identifiers{UID: o.uid, Name: name}, nil
}

// setLocked gives o the attributes attrs (already validated and
// normalized), renaming it when its naming attribute changed.
func (c *Conn) setLocked(op string, cl connector.ObjectClass, o *object, attrs connector.Attributes) (connector.Identifiers, error) {
	name, err := c.nameOf(op, cl, attrs)
	if err != nil {
		return connector.Identifiers{}, err
	}
	k := c.classes[cl]
	oldName := ""
	if name != o.name {
		if other := k.byName[name]; other != nil {
			existing := connector.Identifiers{UID: other.uid, Name: other.name}
			return connector.Identifiers{}, &connector.Error{Category: connector.CategoryAlreadyExists, Op: op, Existing: &existing,
				Err: fmt.Errorf("cannot rename %s object %q to %q: the name is taken (UID %q)", cl, o.name, name, other.uid)}
		}
		delete(k.byName, o.name)
		k.byName[name] = o
		oldName, o.name = o.name, name
	}
	o.attrs = attrs
	c.record(k, logEntry{typ: connector.ChangeModify, uid: o.uid, name: name, oldName: oldName}, attrs)
	return connector.Identifiers{UID: o.uid, Name: name}, nil
}

func (c *Conn) modifyLocked(op string, cl connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Identifiers, error) {
	if err := checkChanges(op, changes); err != nil {
		return connector.Identifiers{}, err
	}
	o := c.find(cl, id)
	if o == nil {
		return connector.Identifiers{}, notFound(op, cl, id)
	}
	return c.setLocked(op, cl, o, normalize(connector.ApplyChanges(o.attrs, changes)))
}

func (c *Conn) deleteLocked(op string, cl connector.ObjectClass, id connector.Identifiers) error {
	o := c.find(cl, id)
	if o == nil {
		return notFound(op, cl, id)
	}
	k := c.classes[cl]
	delete(k.objects, o.uid)
	delete(k.byName, o.name)
	o.removed = true
	k.removed++
	if k.removed > 64 && k.removed > len(k.order)/2 {
		live := k.order[:0]
		for _, x := range k.order {
			if !x.removed {
				live = append(live, x)
			}
		}
		clear(k.order[len(live):])
		k.order, k.removed = live, 0
	}
	c.record(k, logEntry{typ: connector.ChangeDelete, uid: o.uid, name: o.name}, nil)
	return nil
}

// formatUID returns "u-" and n in at least six digits.
func formatUID(n uint64) string {
	var buf [32]byte
	b := append(buf[:0], "u-"...)
	for d := uint64(100000); d > 1 && n < d; d /= 10 {
		b = append(b, '0')
	}
	return string(strconv.AppendUint(b, n, 10))
}

// normalize is connector.Attributes.Normalize (value sets sorted and
// de-duplicated, empty attributes dropped) with every value slice taken from
// one backing array: two allocations per object instead of one per
// attribute. Each slice's capacity ends at its own values.
func normalize(a connector.Attributes) connector.Attributes {
	total := 0
	for _, v := range a {
		total += len(v)
	}
	out := make(connector.Attributes, len(a))
	slab := make([]string, 0, total)
	for k, v := range a {
		if len(v) == 0 {
			continue
		}
		start := len(slab)
		slab = append(slab, v...)
		vals := slab[start:len(slab):len(slab)]
		if len(vals) > 1 {
			slices.Sort(vals)
			vals = slices.Compact(vals)
		}
		out[k] = vals
	}
	return out
}

func (o *object) export(cl connector.ObjectClass) connector.Object {
	return connector.Object{Class: cl, ID: connector.Identifiers{UID: o.uid, Name: o.name}, Attributes: o.attrs.Clone()}
}

// ---- connector.Connector ----

// Add creates an object. attrs MUST hold the class's naming attribute with
// one non-empty value (else CategorySchema); a taken Name fails with
// CategoryAlreadyExists and Error.Existing set. In Async mode the object is
// created only by CompleteAsync.
func (c *Conn) Add(ctx context.Context, cl connector.ObjectClass, attrs connector.Attributes) (connector.Result, error) {
	const op = "add"
	afterApply, err := c.begin(ctx, CallAdd)
	if err != nil {
		return connector.Result{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var res connector.Result
	if c.async {
		if err := checkAttributes(op, attrs); err != nil {
			return connector.Result{}, err
		}
		norm := normalize(attrs)
		if _, err := c.nameOf(op, cl, norm); err != nil {
			return connector.Result{}, err
		}
		res.Async = c.newAsyncLocked(&asyncOp{kind: CallAdd, class: cl, attrs: norm})
	} else {
		id, err := c.addLocked(op, cl, attrs)
		if err != nil {
			return connector.Result{}, err
		}
		res.ID = id
	}
	if afterApply {
		return connector.Result{}, afterApplyError(op)
	}
	return res, nil
}

// Modify applies changes to the object id (UID, else Name). Replacing the
// naming attribute renames the object and Result.ID carries the new Name;
// removing it fails with CategorySchema, and renaming to a taken Name with
// CategoryAlreadyExists.
func (c *Conn) Modify(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
	const op = "modify"
	afterApply, err := c.begin(ctx, CallModify)
	if err != nil {
		return connector.Result{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var res connector.Result
	if c.async {
		if err := checkChanges(op, changes); err != nil {
			return connector.Result{}, err
		}
		res.Async = c.newAsyncLocked(&asyncOp{kind: CallModify, class: cl, id: id, changes: connector.Delta{Changes: changes}.Clone().Changes})
	} else {
		newID, err := c.modifyLocked(op, cl, id, changes)
		if err != nil {
			return connector.Result{}, err
		}
		res.ID = newID
	}
	if afterApply {
		return connector.Result{}, afterApplyError(op)
	}
	return res, nil
}

// Delete deletes the object id (UID, else Name).
func (c *Conn) Delete(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers) (connector.Result, error) {
	const op = "delete"
	afterApply, err := c.begin(ctx, CallDelete)
	if err != nil {
		return connector.Result{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var res connector.Result
	if c.async {
		res.Async = c.newAsyncLocked(&asyncOp{kind: CallDelete, class: cl, id: id})
	} else if err := c.deleteLocked(op, cl, id); err != nil {
		return connector.Result{}, err
	}
	if afterApply {
		return connector.Result{}, afterApplyError(op)
	}
	return res, nil
}

// Get returns a copy of the object id (UID, else Name).
func (c *Conn) Get(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers) (connector.Object, error) {
	if _, err := c.begin(ctx, CallGet); err != nil {
		return connector.Object{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.find(cl, id)
	if o == nil {
		return connector.Object{}, notFound("get", cl, id)
	}
	return o.export(cl), nil
}

// ---- connector.Searcher ----

// Search calls fn for every object of class in UID order (only the object
// named opts.Name when that is set), reading opts.PageSize objects at a time
// (DefaultPageSize when zero). No lock is held while fn runs, so fn may call
// the Conn; objects created during the search may or may not be seen.
func (c *Conn) Search(ctx context.Context, cl connector.ObjectClass, opts connector.SearchOptions, fn func(connector.Object) error) error {
	const op = "search"
	if _, err := c.begin(ctx, CallSearch); err != nil {
		return err
	}
	if opts.Name != "" {
		c.mu.Lock()
		o := c.find(cl, connector.Identifiers{Name: opts.Name})
		var obj connector.Object
		if o != nil {
			obj = o.export(cl)
		}
		c.mu.Unlock()
		if o == nil {
			return nil
		}
		return fn(obj)
	}
	size := opts.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	var after uint64
	page := make([]connector.Object, 0, size)
	for {
		if err := ctx.Err(); err != nil {
			return connector.NewError(connector.CategoryNotSent, op, err)
		}
		page = page[:0]
		c.mu.Lock()
		if k := c.classes[cl]; k != nil {
			i := sort.Search(len(k.order), func(i int) bool { return k.order[i].seq > after })
			for ; i < len(k.order) && len(page) < size; i++ {
				if o := k.order[i]; !o.removed {
					page = append(page, o.export(cl))
					after = o.seq
				}
			}
		}
		c.mu.Unlock()
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(page) < size {
			return nil
		}
	}
}

// ---- connector.LiveSyncer ----

// PreciseTokens reports Options.PreciseTokens.
func (c *Conn) PreciseTokens() bool { return c.opts.PreciseTokens }

// LatestToken returns the position after the last change of class.
func (c *Conn) LatestToken(ctx context.Context, cl connector.ObjectClass) (connector.Token, error) {
	if _, err := c.begin(ctx, CallLatestToken); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if k := c.classes[cl]; k != nil {
		n = len(k.log)
	}
	return formatToken(uint64(n)), nil
}

func formatToken(n uint64) connector.Token { return connector.Token(strconv.FormatUint(n, 10)) }

// FetchChanges returns up to max changes of class after from (Options.MaxFetch
// when max ≤ 0). A token that is not a decimal position of this resource
// fails with CategorySchema naming it. Its cost is proportional to the
// batch, not to the log.
func (c *Conn) FetchChanges(ctx context.Context, cl connector.ObjectClass, from connector.Token, limit int) (connector.ChangeBatch, error) {
	const op = "fetch changes"
	if _, err := c.begin(ctx, CallFetch); err != nil {
		return connector.ChangeBatch{}, err
	}
	var pos uint64
	if from != "" {
		p, err := strconv.ParseUint(string(from), 10, 64)
		if err != nil {
			return connector.ChangeBatch{}, schemaErr(op, "malformed token %q: not a decimal position", string(from))
		}
		pos = p
	}
	if limit <= 0 {
		limit = c.opts.MaxFetch
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var log []logEntry
	if k := c.classes[cl]; k != nil {
		log = k.log
	}
	if pos > uint64(len(log)) {
		return connector.ChangeBatch{}, schemaErr(op, "token %q is beyond the end of the %s change log (%d)", string(from), cl, len(log))
	}
	end := min(uint64(len(log)), pos+uint64(limit))
	batch := connector.ChangeBatch{Token: formatToken(end), More: end < uint64(len(log))}
	if end == pos {
		return batch, nil
	}
	batch.Changes = make([]connector.Change, end-pos)
	for i, e := range log[pos:end] {
		ch := &batch.Changes[i]
		ch.Type, ch.Class, ch.OldName = e.typ, cl, e.oldName
		ch.ID = connector.Identifiers{UID: e.uid, Name: e.name}
		ch.Object = attrenc.Decode(e.attrs)
		if c.opts.PreciseTokens {
			ch.Token = formatToken(pos + uint64(i) + 1)
		}
	}
	return batch, nil
}

// ---- connector.Tester ----

// Test returns nil unless a fault is injected.
func (c *Conn) Test(ctx context.Context) error {
	_, err := c.begin(ctx, CallTest)
	return err
}

// ---- direct manipulation ("behind the engine's back") ----

// Put creates an object of class with attrs, as someone working on the
// resource directly would: no call is counted and no fault applies, but the
// change is logged for live sync. It fails as Add would on bad or duplicate
// attributes.
func (c *Conn) Put(cl connector.ObjectClass, attrs connector.Attributes) (connector.Identifiers, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addLocked("put", cl, attrs)
}

// Set replaces all attributes of the object uid with attrs (renaming it when
// the naming attribute changes), behind the engine's back.
func (c *Conn) Set(cl connector.ObjectClass, uid string, attrs connector.Attributes) (connector.Identifiers, error) {
	const op = "set"
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkAttributes(op, attrs); err != nil {
		return connector.Identifiers{}, err
	}
	o := c.find(cl, connector.Identifiers{UID: uid})
	if o == nil {
		return connector.Identifiers{}, notFound(op, cl, connector.Identifiers{UID: uid})
	}
	return c.setLocked(op, cl, o, normalize(attrs))
}

// ModifyDirect applies changes to the object uid behind the engine's back,
// as Modify would.
func (c *Conn) ModifyDirect(cl connector.ObjectClass, uid string, changes ...connector.AttributeDelta) (connector.Identifiers, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.modifyLocked("modify direct", cl, connector.Identifiers{UID: uid}, changes)
}

// Remove deletes the object uid behind the engine's back.
func (c *Conn) Remove(cl connector.ObjectClass, uid string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deleteLocked("remove", cl, connector.Identifiers{UID: uid})
}

// Objects returns a copy of every object of class, in UID order.
func (c *Conn) Objects(cl connector.ObjectClass) []connector.Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.classes[cl]
	if k == nil {
		return nil
	}
	out := make([]connector.Object, 0, len(k.objects))
	for _, o := range k.order {
		if !o.removed {
			out = append(out, o.export(cl))
		}
	}
	return out
}

// Object returns a copy of the object uid of class; ok is false when there
// is none.
func (c *Conn) Object(cl connector.ObjectClass, uid string) (obj connector.Object, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.find(cl, connector.Identifiers{UID: uid})
	if o == nil {
		return connector.Object{}, false
	}
	return o.export(cl), true
}

// ObjectByName returns a copy of the object of class named name; ok is false
// when there is none.
func (c *Conn) ObjectByName(cl connector.ObjectClass, name string) (obj connector.Object, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.find(cl, connector.Identifiers{Name: name})
	if o == nil || name == "" {
		return connector.Object{}, false
	}
	return o.export(cl), true
}

// Len returns how many objects of class exist.
func (c *Conn) Len(cl connector.ObjectClass) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.classes[cl]; k != nil {
		return len(k.objects)
	}
	return 0
}

// Changes returns how many changes of class the log holds: the position
// LatestToken reports.
func (c *Conn) Changes(cl connector.ObjectClass) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.classes[cl]; k != nil {
		return len(k.log)
	}
	return 0
}
