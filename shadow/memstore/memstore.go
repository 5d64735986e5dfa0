// Package memstore is an in-memory shadow.Store: the default for tests,
// examples and single-process hosts that need no durability.
//
// It implements shadow.Store, shadow.Batcher, shadow.Claimer and
// shadow.Leaser, is safe for concurrent use (one RWMutex: reads run
// together, writes one at a time) and passes the conformance suite in
// shadow/storetest.
//
// # Indexes
//
// The engines' queries cost in proportion to the shadows they select, not
// to all shadows: the store keeps the shadows by ID, by UID and by Name,
// per resource, those with unfinished pending operations (in all and per
// operation type), the dead ones, those needing reconciliation, all in ID
// order, and those with a NextDue in (NextDue, ID) order. A query starts
// from the smallest index its fields allow and pages with After without
// sorting; a DueBy query reads only the due shadows. With a million shadows
// of which a thousand are due, a refresh query reads about a thousand.
//
// # Memory
//
// Each shadow is kept once, as a compact record whose attribute cache is
// encoded into a single string (names, values and varint lengths, nothing
// else); indexes hold pointers to it, claims live beside it. Resource IDs,
// classes, kinds and intents are interned. Get and List decode a fresh copy.
// About 550 bytes a shadow go to the record, its ID and identifiers and the
// indexes; the rest is the attributes' own bytes (for 10 attributes of 3
// values of about 20 bytes, the heap is under twice the raw attribute
// bytes; see TestMemoryFootprint and BenchmarkFootprint100k).
//
// Times are kept to the nanosecond and come back in UTC (the location is
// not kept). Long scans hold the read lock throughout and check ctx only on
// entry: an in-memory scan of a million shadows takes milliseconds.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/attrenc"
	"github.com/umbra-idm/umbra/internal/clock"
	"github.com/umbra-idm/umbra/shadow"
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Clock is the time source for CreatedAt and UpdatedAt, claim expiry
	// and lease expiry. Default: the wall clock.
	Clock connector.Clock
}

// Store is an in-memory shadow store. It is safe for concurrent use. The
// zero value is not usable; call New.
type Store struct {
	clock clock.Clock

	mu sync.RWMutex
	// byID and ids hold every shadow; ids in ID order for paging.
	byID map[string]*record
	ids  *orderedSet
	// byUID and byName hold, for each identifier, the head of the chain
	// (record.nextUID, record.nextName) of the shadows with it: a handful
	// each. byUID also serves live uniqueness.
	byUID  map[string]*record
	byName map[string]*record
	// byResource holds each resource's shadows in ID order.
	byResource map[string]*orderedSet
	// unfinished[0] holds the shadows with an unfinished pending
	// operation, unfinished[t] those with one of type t; in ID order.
	unfinished [shadow.OpAsync + 1]*orderedSet
	dead       *orderedSet // Dead, in ID order
	recon      *orderedSet // NeedsReconciliation, in ID order
	due        *orderedSet // NextDue set, in (NextDue, ID) order
	// claims holds the Claimer claims by shadow ID; few shadows are
	// claimed at any time, so the records do not carry them.
	claims map[string]claim
	leases map[string]shadow.Lease
	intern map[string]string
	// nextSeq and idTail make new IDs (see newID), under the write lock.
	nextSeq uint64
	idTail  uint64
}

// record is one stored shadow, laid out compactly: the fields of
// shadow.Shadow with times as seconds and nanoseconds (UTC), the attribute
// cache encoded (see internal/attrenc), and the links of the byUID and byName
// chains. The pointer is stable for the shadow's life in the store; its
// fields change only under the write lock, after the record was removed from
// the indexes the change affects.
type record struct {
	id, resourceID, uid, name, kind, intent string
	class                                   connector.ObjectClass
	attrs                                   string
	pending                                 []shadow.PendingOperation
	version                                 int64
	sec                                     [nTimes]int64
	nsec                                    [nTimes]int32
	exists, dead, needsRecon                bool
	origin                                  shadow.Origin
	// nextUID and nextName link the records that share a UID or a Name.
	nextUID, nextName *record
}

// The times of a record, by index into record.sec and record.nsec.
const (
	tDeadSince = iota
	tNextDue
	tReconciledAt
	tCreatedAt
	tUpdatedAt
	nTimes
)

// claim is a Claimer claim on one shadow.
type claim struct {
	owner string
	until time.Time
}

var (
	_ shadow.Store   = (*Store)(nil)
	_ shadow.Batcher = (*Store)(nil)
	_ shadow.Claimer = (*Store)(nil)
	_ shadow.Leaser  = (*Store)(nil)
)

// New returns an empty store.
func New(opts Options) *Store {
	s := &Store{
		clock:      clock.Or(opts.Clock),
		byID:       make(map[string]*record),
		ids:        newOrderedSet(byID),
		byUID:      make(map[string]*record),
		byName:     make(map[string]*record),
		claims:     make(map[string]claim),
		byResource: make(map[string]*orderedSet),
		dead:       newOrderedSet(byID),
		recon:      newOrderedSet(byID),
		due:        newOrderedSet(byDue),
		leases:     make(map[string]shadow.Lease),
		intern:     make(map[string]string),
		nextSeq:    rand.Uint64() & (1<<46 - 1),
		idTail:     rand.Uint64() & (1<<48 - 1),
	}
	for i := range s.unfinished {
		s.unfinished[i] = newOrderedSet(byID)
	}
	return s
}

// Len returns the number of shadows in the store.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byID)
}

func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %s: %w", op, err)
	}
	return nil
}

// Create stores a copy of sh; see shadow.Store.
func (s *Store) Create(ctx context.Context, sh *shadow.Shadow) error {
	if err := ctxErr(ctx, "create"); err != nil {
		return err
	}
	if err := validate("create", sh); err != nil {
		return err
	}
	e := encode(sh)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.createLocked(sh, &e)
	return err
}

// Get returns a copy of the shadow id; see shadow.Store.
func (s *Store) Get(ctx context.Context, id string) (*shadow.Shadow, error) {
	if err := ctxErr(ctx, "get"); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("memstore: get %q: %w", id, shadow.ErrNotFound)
	}
	return r.shadow(), nil
}

// Update replaces the shadow sh.ID with a copy of sh when the versions
// match; see shadow.Store. On success sh.Version is incremented and
// sh.UpdatedAt and sh.CreatedAt set to the stored values.
func (s *Store) Update(ctx context.Context, sh *shadow.Shadow) error {
	if err := ctxErr(ctx, "update"); err != nil {
		return err
	}
	if err := validate("update", sh); err != nil {
		return err
	}
	e := encode(sh)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, err := s.updateLocked(sh, &e)
	return err
}

// Delete removes the shadow id when its version is version; see
// shadow.Store.
func (s *Store) Delete(ctx context.Context, id string, version int64) error {
	if err := ctxErr(ctx, "delete"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, err := s.deleteLocked(id, version)
	return err
}

// List returns copies of the shadows q selects, in ID order; see
// shadow.Store.
func (s *Store) List(ctx context.Context, q shadow.Query) ([]*shadow.Shadow, error) {
	if err := ctxErr(ctx, "list"); err != nil {
		return nil, err
	}
	if err := validateQuery(q); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*shadow.Shadow
	s.scan(q, func(r *record) bool {
		out = append(out, r.shadow())
		return q.Limit == 0 || len(out) < q.Limit
	})
	return out, nil
}

// Count returns how many shadows q selects; see shadow.Store.
func (s *Store) Count(ctx context.Context, q shadow.Query) (int, error) {
	if err := ctxErr(ctx, "count"); err != nil {
		return 0, err
	}
	q.After, q.Limit = "", 0
	if err := validateQuery(q); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if q == (shadow.Query{}) {
		return len(s.byID), nil
	}
	n := 0
	s.scan(q, func(*record) bool { n++; return true })
	return n, nil
}

func validate(op string, sh *shadow.Shadow) error {
	if sh == nil {
		return fmt.Errorf("memstore: %s: nil shadow: %w", op, shadow.ErrInvalid)
	}
	if err := sh.Validate(); err != nil {
		return fmt.Errorf("memstore: %s: %w: %w", op, shadow.ErrInvalid, err)
	}
	return nil
}

func validateQuery(q shadow.Query) error {
	switch {
	case q.Limit < 0:
		return fmt.Errorf("memstore: query: negative Limit %d: %w", q.Limit, shadow.ErrInvalid)
	case q.Dead > shadow.DeadOnly:
		return fmt.Errorf("memstore: query: unknown Dead filter %d: %w", q.Dead, shadow.ErrInvalid)
	case q.PendingType > shadow.OpAsync:
		return fmt.Errorf("memstore: query: unknown PendingType %d: %w", q.PendingType, shadow.ErrInvalid)
	}
	return nil
}

// shadow returns a fresh copy of the stored shadow. The caller holds at
// least the read lock.
func (r *record) shadow() *shadow.Shadow {
	return &shadow.Shadow{
		ID:                  r.id,
		ResourceID:          r.resourceID,
		Class:               r.class,
		Kind:                r.kind,
		Intent:              r.intent,
		UID:                 r.uid,
		Name:                r.name,
		Attributes:          attrenc.Decode(r.attrs),
		Exists:              r.exists,
		Dead:                r.dead,
		DeadSince:           r.time(tDeadSince),
		Origin:              r.origin,
		Version:             r.version,
		Pending:             clonePending(r.pending),
		NextDue:             r.time(tNextDue),
		NeedsReconciliation: r.needsRecon,
		ReconciledAt:        r.time(tReconciledAt),
		CreatedAt:           r.time(tCreatedAt),
		UpdatedAt:           r.time(tUpdatedAt),
	}
}

// time returns the record's time i, in UTC; the zero time stays zero.
func (r *record) time(i int) time.Time {
	return time.Unix(r.sec[i], int64(r.nsec[i])).UTC()
}

// setTime stores t as the record's time i. The zero time round-trips: its
// Unix seconds are those of January 1, year 1, which time.Unix turns back
// into the zero time.
func (r *record) setTime(i int, t time.Time) {
	r.sec[i], r.nsec[i] = t.Unix(), int32(t.Nanosecond())
}

// timeIsZero reports whether the record's time i is the zero time.
func (r *record) timeIsZero(i int) bool {
	return r.sec[i] == zeroSec && r.nsec[i] == 0
}

var zeroSec = time.Time{}.Unix()

// compareTime compares the record's time i with t.
func (r *record) compareTime(i int, t time.Time) int {
	if c := cmp.Compare(r.sec[i], t.Unix()); c != 0 {
		return c
	}
	return cmp.Compare(r.nsec[i], int32(t.Nanosecond()))
}

func (r *record) live() bool { return r.exists && !r.dead }

// oldestUnfinished is shadow.Shadow.OldestUnfinished over the record.
func (r *record) oldestUnfinished(t shadow.OpType) (time.Time, bool) {
	var oldest time.Time
	found := false
	for i := range r.pending {
		op := &r.pending[i]
		if op.Completed() || (t != 0 && op.Type != t) {
			continue
		}
		if !found || op.RequestedAt.Before(oldest) {
			oldest, found = op.RequestedAt, true
		}
	}
	return oldest, found
}

func clonePending(ops []shadow.PendingOperation) []shadow.PendingOperation {
	if ops == nil {
		return nil
	}
	out := make([]shadow.PendingOperation, len(ops))
	for i := range ops {
		out[i] = ops[i].Clone()
	}
	return out
}

// encoded is a shadow's attributes and pending operations in the form a
// record holds them. Writes make it before they take the store's lock, so
// that concurrent writers do not queue behind each other's encoding.
type encoded struct {
	attrs   string
	pending []shadow.PendingOperation
}

// scratchPool holds attrenc.EncodeBuf buffers for encode.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// encode returns sh's attributes and pending operations as a record holds
// them.
func encode(sh *shadow.Shadow) encoded {
	buf := scratchPool.Get().(*[]byte)
	e := encoded{attrs: attrenc.EncodeBuf(sh.Attributes, buf)}
	scratchPool.Put(buf)
	if len(sh.Pending) > 0 {
		e.pending = clonePending(sh.Pending)
	}
	return e
}

// fill sets r's content from sh (the caller's value, copied), apart from
// the ID, the version and the store's timestamps; e is sh encoded.
func (s *Store) fill(r *record, sh *shadow.Shadow, e *encoded) {
	r.resourceID = s.internString(sh.ResourceID)
	r.class = connector.ObjectClass(s.internString(string(sh.Class)))
	r.kind = s.internString(sh.Kind)
	r.intent = s.internString(sh.Intent)
	r.uid, r.name = sh.UID, sh.Name
	r.attrs, r.pending = e.attrs, e.pending
	r.exists, r.dead, r.needsRecon, r.origin = sh.Exists, sh.Dead, sh.NeedsReconciliation, sh.Origin
	r.setTime(tDeadSince, sh.DeadSince)
	r.setTime(tNextDue, sh.NextDue)
	r.setTime(tReconciledAt, sh.ReconciledAt)
}

// internString returns one shared copy of a short, frequently repeated
// string (resource IDs, classes, kinds, intents), so that a million shadows
// of one resource do not hold a million copies of its name.
func (s *Store) internString(v string) string {
	if v == "" || len(v) > 128 {
		return v
	}
	if w, ok := s.intern[v]; ok {
		return w
	}
	if len(s.intern) >= 1<<16 { // Not a small vocabulary after all.
		return v
	}
	s.intern[v] = v
	return v
}

// newID returns an ID no shadow has: 24 hex digits, a sequence number
// (from a random start) then a per-store random tail. New IDs ascend, so
// that a create appends to the ID-ordered indexes instead of inserting
// into the middle of them; the random start and tail keep the IDs of two
// stores apart.
func (s *Store) newID() string {
	for {
		s.nextSeq++
		var b [24]byte
		putHex(b[:12], s.nextSeq)
		putHex(b[12:], s.idTail)
		if id := string(b[:]); s.byID[id] == nil {
			return id
		}
	}
}

// putHex writes the low 4*len(dst) bits of v into dst as lower-case hex.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// liveConflict returns the live shadow, other than self, that holds sh's
// live identity, or nil. Shadows that are not live, or have no UID, hold no
// identity.
func (s *Store) liveConflict(sh *shadow.Shadow, self *record) *record {
	if !sh.Live() || sh.UID == "" {
		return nil
	}
	for r := s.byUID[sh.UID]; r != nil; r = r.nextUID {
		if r != self && r.live() && r.resourceID == sh.ResourceID && r.class == sh.Class {
			return r
		}
	}
	return nil
}

// createLocked stores a copy of sh and sets sh's ID, Version and
// timestamps. sh is valid. The caller holds the write lock.
func (s *Store) createLocked(sh *shadow.Shadow, e *encoded) (*record, error) {
	id := sh.ID
	if id == "" {
		id = s.newID()
	} else if _, taken := s.byID[id]; taken {
		return nil, fmt.Errorf("memstore: create %q: a shadow with this ID exists: %w", id, shadow.ErrDuplicate)
	}
	if other := s.liveConflict(sh, nil); other != nil {
		return nil, fmt.Errorf("memstore: create %q: live identity %s/%s/%s is held by shadow %q: %w",
			id, sh.ResourceID, sh.Class, sh.UID, other.id, shadow.ErrDuplicate)
	}
	now := s.clock.Now()
	r := &record{id: id, version: 1}
	s.fill(r, sh, e)
	r.setTime(tCreatedAt, now)
	r.setTime(tUpdatedAt, now)
	s.byID[id] = r
	s.ids.insert(r)
	s.index(r)
	sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = id, 1, r.time(tCreatedAt), r.time(tUpdatedAt)
	return r, nil
}

// updateLocked replaces the stored shadow sh.ID with a copy of sh. sh is
// valid. It returns the record and its previous content for an undo. The
// caller holds the write lock.
func (s *Store) updateLocked(sh *shadow.Shadow, e *encoded) (*record, record, error) {
	r, ok := s.byID[sh.ID]
	if !ok {
		return nil, record{}, fmt.Errorf("memstore: update %q: %w", sh.ID, shadow.ErrNotFound)
	}
	if r.version != sh.Version {
		return nil, record{}, fmt.Errorf("memstore: update %q: stored version is %d, caller's %d: %w",
			sh.ID, r.version, sh.Version, shadow.ErrConflict)
	}
	if other := s.liveConflict(sh, r); other != nil {
		return nil, record{}, fmt.Errorf("memstore: update %q: live identity %s/%s/%s is held by shadow %q: %w",
			sh.ID, sh.ResourceID, sh.Class, sh.UID, other.id, shadow.ErrDuplicate)
	}
	// Most updates change nothing an index sorts on (a cache refresh), or
	// one or two things (a retry's next attempt time, an operation that
	// completed): only the indexes whose part of the key changed are
	// touched, the bulk of an update's cost otherwise.
	was, now := r.indexKey(), shadowIndexKey(sh)
	if was != now {
		s.unindexChanged(r, &was, &now)
	}
	old := *r
	s.fill(r, sh, e)
	r.version++
	r.setTime(tUpdatedAt, s.clock.Now())
	if was != now {
		s.indexChanged(r, &was, &now)
	}
	sh.Version, sh.CreatedAt, sh.UpdatedAt = r.version, r.time(tCreatedAt), r.time(tUpdatedAt)
	return r, old, nil
}

// deleteLocked removes the shadow id at version. It returns the record and
// its claim, for an undo. The caller holds the write lock.
func (s *Store) deleteLocked(id string, version int64) (*record, claim, error) {
	r, ok := s.byID[id]
	if !ok {
		return nil, claim{}, fmt.Errorf("memstore: delete %q: %w", id, shadow.ErrNotFound)
	}
	if r.version != version {
		return nil, claim{}, fmt.Errorf("memstore: delete %q: stored version is %d, caller's %d: %w",
			id, r.version, version, shadow.ErrConflict)
	}
	c := s.claims[id]
	s.remove(r)
	return r, c, nil
}

// remove takes r out of the store entirely, its claim included.
func (s *Store) remove(r *record) {
	s.unindex(r)
	s.ids.remove(r)
	delete(s.byID, r.id)
	delete(s.claims, r.id)
}

// insert puts a removed record back with its claim (batch undo).
func (s *Store) insert(r *record, c claim) {
	s.byID[r.id] = r
	s.ids.insert(r)
	s.index(r)
	if c.owner != "" {
		s.claims[r.id] = c
	}
}

// index adds r to the secondary indexes its content puts it in.
func (s *Store) index(r *record) {
	if r.uid != "" {
		r.nextUID = s.byUID[r.uid]
		s.byUID[r.uid] = r
	}
	if r.name != "" {
		r.nextName = s.byName[r.name]
		s.byName[r.name] = r
	}
	res := s.byResource[r.resourceID]
	if res == nil {
		res = newOrderedSet(byID)
		s.byResource[r.resourceID] = res
	}
	res.insert(r)
	if len(r.pending) > 0 {
		for t := range s.unfinished {
			if _, ok := r.oldestUnfinished(shadow.OpType(t)); ok {
				s.unfinished[t].insert(r)
			}
		}
	}
	if r.dead {
		s.dead.insert(r)
	}
	if r.needsRecon {
		s.recon.insert(r)
	}
	if !r.timeIsZero(tNextDue) {
		s.due.insert(r)
	}
}

// indexKey is what places a record in the secondary indexes.
type indexKey struct {
	uid, name, resourceID string
	unfinished            [shadow.OpAsync + 1]bool
	dead, recon, hasDue   bool
	due                   int64
}

func (r *record) indexKey() indexKey {
	k := indexKey{uid: r.uid, name: r.name, resourceID: r.resourceID, dead: r.dead, recon: r.needsRecon}
	if len(r.pending) > 0 {
		for t := range k.unfinished {
			_, k.unfinished[t] = r.oldestUnfinished(shadow.OpType(t))
		}
	}
	if !r.timeIsZero(tNextDue) {
		k.hasDue, k.due = true, r.time(tNextDue).UnixNano()
	}
	return k
}

// shadowIndexKey is the indexKey a record filled from sh would have.
func shadowIndexKey(sh *shadow.Shadow) indexKey {
	k := indexKey{uid: sh.UID, name: sh.Name, resourceID: sh.ResourceID, dead: sh.Dead, recon: sh.NeedsReconciliation}
	for t := range k.unfinished {
		_, k.unfinished[t] = sh.OldestUnfinished(shadow.OpType(t))
	}
	if !sh.NextDue.IsZero() {
		k.hasDue, k.due = true, sh.NextDue.UnixNano()
	}
	return k
}

// unindex removes r from the secondary indexes; r's content is what it was
// when index was called.
func (s *Store) unindex(r *record) {
	if r.uid != "" {
		unchain(s.byUID, r.uid, r, func(r *record) **record { return &r.nextUID })
	}
	if r.name != "" {
		unchain(s.byName, r.name, r, func(r *record) **record { return &r.nextName })
	}
	if res := s.byResource[r.resourceID]; res != nil {
		res.remove(r)
		if res.len() == 0 {
			delete(s.byResource, r.resourceID)
		}
	}
	if len(r.pending) > 0 {
		for _, set := range s.unfinished {
			set.remove(r)
		}
	}
	if r.dead {
		s.dead.remove(r)
	}
	if r.needsRecon {
		s.recon.remove(r)
	}
	if !r.timeIsZero(tNextDue) {
		s.due.remove(r)
	}
}

// unindexChanged removes r, whose content is still that of key ok, from
// the secondary indexes whose part of the key differs in nk.
func (s *Store) unindexChanged(r *record, ok, nk *indexKey) {
	if ok.uid != nk.uid && r.uid != "" {
		unchain(s.byUID, r.uid, r, func(r *record) **record { return &r.nextUID })
	}
	if ok.name != nk.name && r.name != "" {
		unchain(s.byName, r.name, r, func(r *record) **record { return &r.nextName })
	}
	if ok.resourceID != nk.resourceID {
		if res := s.byResource[r.resourceID]; res != nil {
			res.remove(r)
			if res.len() == 0 {
				delete(s.byResource, r.resourceID)
			}
		}
	}
	for t, was := range ok.unfinished {
		if was && !nk.unfinished[t] {
			s.unfinished[t].remove(r)
		}
	}
	if ok.dead && !nk.dead {
		s.dead.remove(r)
	}
	if ok.recon && !nk.recon {
		s.recon.remove(r)
	}
	if ok.hasDue && (!nk.hasDue || ok.due != nk.due) {
		s.due.remove(r)
	}
}

// indexChanged adds r, whose content is now that of key nk, to the
// secondary indexes whose part of the key differs from ok.
func (s *Store) indexChanged(r *record, ok, nk *indexKey) {
	if ok.uid != nk.uid && r.uid != "" {
		r.nextUID = s.byUID[r.uid]
		s.byUID[r.uid] = r
	}
	if ok.name != nk.name && r.name != "" {
		r.nextName = s.byName[r.name]
		s.byName[r.name] = r
	}
	if ok.resourceID != nk.resourceID {
		res := s.byResource[r.resourceID]
		if res == nil {
			res = newOrderedSet(byID)
			s.byResource[r.resourceID] = res
		}
		res.insert(r)
	}
	for t, is := range nk.unfinished {
		if is && !ok.unfinished[t] {
			s.unfinished[t].insert(r)
		}
	}
	if nk.dead && !ok.dead {
		s.dead.insert(r)
	}
	if nk.recon && !ok.recon {
		s.recon.insert(r)
	}
	if nk.hasDue && (!ok.hasDue || ok.due != nk.due) {
		s.due.insert(r)
	}
}

// unchain removes r from the chain of key in m; next returns a record's
// link field.
func unchain(m map[string]*record, key string, r *record, next func(*record) **record) {
	head := m[key]
	if head == r {
		if n := *next(r); n != nil {
			m[key] = n
		} else {
			delete(m, key)
		}
		*next(r) = nil
		return
	}
	for p := head; p != nil; p = *next(p) {
		if *next(p) == r {
			*next(p) = *next(r)
			*next(r) = nil
			return
		}
	}
}
