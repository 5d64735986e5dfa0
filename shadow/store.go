package shadow

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// The store errors, declared once here. Every store returns them (wrapped
// with %w and context) and the conformance suite asserts them with errors.Is;
// no caller compares error strings.
var (
	// ErrNotFound: no shadow with that ID.
	ErrNotFound = errors.New("shadow: not found")
	// ErrConflict: the shadow's version moved since the caller read it.
	ErrConflict = errors.New("shadow: version conflict")
	// ErrDuplicate: another live shadow has the same (resource, class,
	// UID), or a shadow with the same ID exists.
	ErrDuplicate = errors.New("shadow: duplicate")
	// ErrInvalid: the shadow or query is malformed (see Shadow.Validate).
	ErrInvalid = errors.New("shadow: invalid")
	// ErrLeaseHeld: another owner holds the lease and it has not expired.
	ErrLeaseHeld = errors.New("shadow: lease held by another owner")
	// ErrLeaseLost: the caller's lease expired or was taken over; the
	// caller MUST stop the work the lease guarded.
	ErrLeaseLost = errors.New("shadow: lease lost")
)

// DeadFilter selects shadows by their Dead flag.
type DeadFilter uint8

// The dead filters.
const (
	// DeadAny: dead and not dead alike (the zero value).
	DeadAny DeadFilter = iota
	// DeadExclude: only shadows that are not dead.
	DeadExclude
	// DeadOnly: only dead shadows.
	DeadOnly
)

// Query selects shadows. Every set field narrows the selection (AND); the
// zero Query selects every shadow. Each field maps to an indexable column so
// that a SQL store serves the engines' queries from indexes; there is
// deliberately no arbitrary predicate.
//
// Results are ordered by shadow ID; After and Limit page through them
// (keyset paging, stable under concurrent inserts).
type Query struct {
	ResourceID string
	Class      connector.ObjectClass
	// UID and Name match the object identifiers exactly.
	UID  string
	Name string
	// Dead filters by the Dead flag.
	Dead DeadFilter
	// DeadBefore, when set, selects dead shadows whose DeadSince is before
	// it (implies DeadOnly).
	DeadBefore time.Time
	// Unfinished selects shadows with at least one unfinished pending
	// operation; of type PendingType when that is set.
	Unfinished  bool
	PendingType OpType
	// OldestPendingBefore, when set, selects shadows whose oldest
	// unfinished pending operation (of PendingType when set) was requested
	// before it (implies Unfinished).
	OldestPendingBefore time.Time
	// DueBy, when set, selects shadows whose NextDue is set and not after
	// it.
	DueBy time.Time
	// NeedsReconciliation selects only shadows with that mark.
	NeedsReconciliation bool
	// ReconciledBefore, when set, selects shadows whose ReconciledAt is
	// before it (a zero ReconciledAt counts as before).
	ReconciledBefore time.Time
	// After, when set, starts after the shadow with this ID.
	After string
	// Limit caps the number of results; 0 means no cap.
	Limit int
}

// Store keeps shadows. It is an SPI: hosts pick an implementation
// (memstore, sqlstore) and hand it to the engines.
//
// Implementations MUST be safe for concurrent use, MUST copy shadows on the
// way in and out (a caller may modify what it passed or got), and MUST keep
// live identities unique: at most one shadow that is Live() per (ResourceID,
// Class, UID); dead shadows and shadows that do not exist on the resource do
// not count. They MUST stop when ctx is done.
type Store interface {
	// Create stores a new shadow. It assigns s.ID when empty and sets
	// s.Version to 1 and the timestamps. It fails with ErrDuplicate when
	// the ID or the live identity is taken, ErrInvalid when s.Validate
	// fails.
	Create(ctx context.Context, s *Shadow) error
	// Get returns the shadow id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Shadow, error)
	// Update replaces the stored shadow s.ID when its version equals
	// s.Version, and increments s.Version. It fails with ErrConflict when
	// the version moved, ErrNotFound when the shadow is gone,
	// ErrDuplicate when the live identity is taken by another shadow.
	// Nothing is written on failure.
	Update(ctx context.Context, s *Shadow) error
	// Delete removes shadow id when its version equals version. It fails
	// with ErrConflict or ErrNotFound.
	Delete(ctx context.Context, id string, version int64) error
	// List returns the shadows q selects, ordered by ID.
	List(ctx context.Context, q Query) ([]*Shadow, error)
	// Count returns how many shadows q selects (After and Limit ignored).
	Count(ctx context.Context, q Query) (int, error)
}

// WriteOp is the kind of one write in a batch.
type WriteOp uint8

// The batch write operations.
const (
	WriteCreate WriteOp = iota + 1
	WriteUpdate
	WriteDelete
)

// Write is one write of a batch: Create, Update or Delete of Shadow (Delete
// uses Shadow.ID and Shadow.Version).
type Write struct {
	Op     WriteOp
	Shadow *Shadow
}

// Batcher is implemented by a store that can apply several writes in one
// transaction: all of them or none. Live sync uses it for group commits.
type Batcher interface {
	// Apply performs the writes in order, atomically. On success each
	// written shadow's Version (and, for creates, ID) is set as the single
	// operations would set it. On failure nothing is written and the
	// error names the failing write's index.
	Apply(ctx context.Context, writes []Write) error
}

// Claimer is implemented by a store shared by several processes. Workers
// claim due shadows so that no two processes work on the same shadow at once.
type Claimer interface {
	// Claim marks up to limit shadows selected by q as claimed by owner
	// until now+ttl and returns them. Shadows under another owner's
	// unexpired claim are skipped; expired claims are taken over. A claim
	// does not change a shadow's Version.
	Claim(ctx context.Context, q Query, owner string, ttl time.Duration, limit int) ([]*Shadow, error)
	// Release drops owner's claims on the shadows ids. Claims of other
	// owners are left alone.
	Release(ctx context.Context, owner string, ids ...string) error
}

// Lease is a time-limited right to run a single-runner task (a live-sync
// stream, a recurring task).
type Lease struct {
	Name  string
	Owner string
	// Term increases every time the lease changes owner; writes fenced by a
	// lease check the term, so a holder that lost the lease cannot write.
	Term    int64
	Expires time.Time
}

// Leaser is implemented by a store that hands out leases.
type Leaser interface {
	// AcquireLease takes the lease name for owner for ttl: when it is free,
	// expired, or already owner's (then it is renewed). It fails with
	// ErrLeaseHeld when another owner holds it.
	AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (Lease, error)
	// RenewLease extends l by ttl from now. It fails with ErrLeaseLost when
	// l is no longer held (expired and taken, or another term).
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease gives l up; releasing a lease no longer held is not an
	// error.
	ReleaseLease(ctx context.Context, l Lease) error
}

// All iterates over every shadow q selects, pageSize at a time (q.After and
// q.Limit are used for paging and overwritten). Pages are read lazily, so
// the caller may update shadows while iterating; an updated shadow is not
// visited twice because paging is by ID.
func All(ctx context.Context, s Store, q Query, pageSize int) iter.Seq2[*Shadow, error] {
	if pageSize <= 0 {
		pageSize = 500
	}
	return func(yield func(*Shadow, error) bool) {
		q.Limit = pageSize
		for {
			page, err := s.List(ctx, q)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, sh := range page {
				if !yield(sh, nil) {
					return
				}
			}
			if len(page) < pageSize {
				return
			}
			q.After = page[len(page)-1].ID
		}
	}
}

// FindLive returns the live (not dead, existing) shadow of an object by UID,
// or by Name when uid is empty; nil when there is none.
func FindLive(ctx context.Context, s Store, resourceID string, class connector.ObjectClass, id connector.Identifiers) (*Shadow, error) {
	q := Query{ResourceID: resourceID, Class: class, Dead: DeadExclude}
	if id.UID != "" {
		q.UID = id.UID
	} else if id.Name != "" {
		q.Name = id.Name
	} else {
		return nil, nil
	}
	list, err := s.List(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, sh := range list {
		if sh.Exists {
			return sh, nil
		}
	}
	if id.UID == "" && len(list) > 0 {
		return list[0], nil // by Name, a shadow whose add is pending counts too
	}
	return nil, nil
}
