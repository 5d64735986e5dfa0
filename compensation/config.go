package compensation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// DefaultCompensationTimeout is the default of Config.CompensationTimeout.
const DefaultCompensationTimeout = 30 * time.Second

// ManagedStore is where the host keeps its managed objects. The
// Synchronizer writes to it only to revert a change; the forward change is
// stored by the host before it calls Sync.
//
// Both methods receive a context marked as a compensation (IsCompensation
// reports true). A store whose own hooks re-synchronize every write MUST pass
// that context on to Sync, which then applies the revert without ever
// compensating again. Methods MUST stop when ctx is done.
type ManagedStore interface {
	// Put creates or replaces the managed object id with obj. It reverts
	// an update (obj is the old value) and a delete (obj is the deleted
	// object). Put MUST NOT keep obj: it is the caller's copy.
	Put(ctx context.Context, id string, obj connector.Attributes) error
	// Delete deletes the managed object id, reverting a create. Deleting an
	// object that is not there SHOULD succeed; an error of category
	// connector.ErrNotFound is taken as success too.
	Delete(ctx context.Context, id string) error
}

// SyncFunc applies change c to one target: afterwards the target holds
// c.New, or no object for a Delete. c.Old and c.New are the target's own
// copies.
//
// As an IdM mapping does through correlation, a SyncFunc SHOULD make the
// target match c whatever it holds now: a Create or Update of an object the
// target already has sets it to c.New, and a Delete of one it does not have
// succeeds (an error of category connector.ErrNotFound is taken as success
// for a Delete). A revert depends on it: reverting a delete that failed
// half-way recreates an object the target may still hold, and a revert may
// reach a target twice when the host's hooks also re-synchronize it.
//
// Errors SHOULD carry a connector category (a connector's error, or one made
// with connector.NewError) so that the report can say what kind of failure
// it was. A SyncFunc MUST stop when ctx is done.
type SyncFunc func(ctx context.Context, c Change) error

// Target is one place a managed object is synchronized to: a mapping the
// host provides.
type Target struct {
	// BestEffort takes the target out of compensation: its failure is
	// logged and does not stop or revert the run, and the Synchronizer's
	// revert is not sent to it. Default false.
	BestEffort bool
	// Name names the target in reports, errors and logs. Required, and
	// unique among a Synchronizer's targets.
	Name string
	// Sync applies a change to the target. Required.
	Sync SyncFunc
}

// Config configures a Synchronizer.
type Config struct {
	// Clock times the compensation's limit. Default: the wall clock.
	Clock connector.Clock
	// CompensationTimeout bounds a compensation, which runs detached from
	// the caller's cancellation. Must not be negative. Default
	// DefaultCompensationTimeout (when zero).
	CompensationTimeout time.Duration
	// Logger receives the run's log records: warnings for every failure of
	// a compensation and of a best-effort target. Default: nothing is
	// logged.
	Logger *slog.Logger
	// Store is the host's managed-object store, written to revert a change.
	// Required.
	Store ManagedStore
	// Targets are the targets in the order a change reaches them. Required:
	// at least one.
	Targets []Target
}

// Validate reports every problem of c at once (errors.Join), each naming
// the field at fault.
func (c Config) Validate() error {
	var errs []error
	if c.CompensationTimeout < 0 {
		errs = append(errs, fmt.Errorf("compensation: Config.CompensationTimeout is negative (%s)", c.CompensationTimeout))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("compensation: Config.Store is nil"))
	}
	if len(c.Targets) == 0 {
		errs = append(errs, errors.New("compensation: Config.Targets is empty"))
	}
	seen := make(map[string]int, len(c.Targets))
	for i, t := range c.Targets {
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("compensation: Config.Targets[%d].Name is empty", i))
		} else if j, dup := seen[t.Name]; dup {
			errs = append(errs, fmt.Errorf("compensation: Config.Targets[%d].Name %q duplicates Config.Targets[%d]", i, t.Name, j))
		} else {
			seen[t.Name] = i
		}
		if t.Sync == nil {
			errs = append(errs, fmt.Errorf("compensation: Config.Targets[%d].Sync is nil (target %q)", i, t.Name))
		}
	}
	return errors.Join(errs...)
}

// Synchronizer applies managed-object changes to ordered targets, all or
// nothing. It is immutable and safe for concurrent use; see the package doc
// for what a run does.
type Synchronizer struct {
	clock   connector.Clock
	timeout time.Duration
	log     *slog.Logger
	store   ManagedStore
	targets []Target
}

// New returns a Synchronizer for cfg, or cfg's problems (see
// Config.Validate). The targets are copied: later changes to cfg.Targets do
// not affect it.
func New(cfg Config) (*Synchronizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Synchronizer{
		clock:   cfg.Clock,
		timeout: cfg.CompensationTimeout,
		log:     cfg.Logger,
		store:   cfg.Store,
		targets: append([]Target(nil), cfg.Targets...),
	}
	if s.clock == nil {
		s.clock = connector.RealClock{}
	}
	if s.timeout == 0 {
		s.timeout = DefaultCompensationTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Targets returns the names of s's targets in order.
func (s *Synchronizer) Targets() []string {
	names := make([]string, len(s.targets))
	for i, t := range s.targets {
		names[i] = t.Name
	}
	return names
}
