package livesync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// ErrTokenConflict is returned by CompareAndSwapToken when the stored token
// is not the one the caller expected: another runner moved it.
var ErrTokenConflict = errors.New("livesync: token moved by another runner")

// TokenKey names one change stream's position: a task's token for one
// resource and object class.
type TokenKey struct {
	ResourceID string
	Class      connector.ObjectClass
	Task       string
}

// String returns the TokenKey as text for logs and errors.
func (k TokenKey) String() string { return fmt.Sprintf("%s/%s/%s", k.ResourceID, k.Class, k.Task) }

// Validate reports a key with an empty part.
func (k TokenKey) Validate() error {
	switch {
	case k.ResourceID == "":
		return errors.New("livesync: token key has an empty ResourceID")
	case k.Class == "":
		return errors.New("livesync: token key has an empty Class")
	case k.Task == "":
		return errors.New("livesync: token key has an empty Task")
	}
	return nil
}

// SetAsideChange is a change the error policy set aside for a later run.
type SetAsideChange struct {
	// ID identifies the entry within its key (derived from the change's
	// object and token by the engine).
	ID     string
	Change connector.Change
	// Attempts counts how often processing it failed.
	Attempts          int
	LastError         string
	LastErrorCategory connector.Category
	SetAsideAt        time.Time
}

// TokenStore keeps live-sync tokens and the changes set aside for retry.
// It is an SPI: memory (NewMemoryTokenStore) and SQL (sqlstore)
// implementations pass the suite in livesync/tokenstoretest.
//
// Implementations MUST be safe for concurrent use.
type TokenStore interface {
	// LoadToken returns the stored token of key; found is false when none
	// was ever stored.
	LoadToken(ctx context.Context, key TokenKey) (tok connector.Token, found bool, err error)
	// CompareAndSwapToken stores next when the current token is old
	// (old=="" matches "none stored" and the empty token). Otherwise it
	// fails with ErrTokenConflict and stores nothing.
	CompareAndSwapToken(ctx context.Context, key TokenKey, old, next connector.Token) error
	// SetAside stores c under key, replacing an entry with the same ID.
	SetAside(ctx context.Context, key TokenKey, c SetAsideChange) error
	// SetAsideChanges returns key's set-aside changes, oldest first.
	SetAsideChanges(ctx context.Context, key TokenKey) ([]SetAsideChange, error)
	// RemoveSetAside deletes the entry id of key; a missing entry is not
	// an error.
	RemoveSetAside(ctx context.Context, key TokenKey, id string) error
}

// FencedTokenStore is implemented by a token store that can check a lease
// on the same write: a runner that lost its lease cannot move the token.
type FencedTokenStore interface {
	// CompareAndSwapTokenFenced is CompareAndSwapToken that also fails,
	// with shadow.ErrLeaseLost, when lease is no longer held at its term.
	CompareAndSwapTokenFenced(ctx context.Context, key TokenKey, old, next connector.Token, lease shadow.Lease) error
}

// GroupCommitter is implemented by a store that keeps both shadows and
// tokens and can write a group of processed changes in one transaction.
type GroupCommitter interface {
	// CommitGroup applies the shadow writes and moves key's token from old
	// to next atomically (with the fence, when lease is not nil). On any
	// failure nothing is written.
	CommitGroup(ctx context.Context, writes []shadow.Write, key TokenKey, old, next connector.Token, lease *shadow.Lease) error
}
