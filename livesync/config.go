package livesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/clock"
	"github.com/umbra-idm/umbra/shadow"
)

// Defaults of Config and LeaseConfig.
const (
	// DefaultTaskName is Config.TaskName when it is empty.
	DefaultTaskName = "livesync"
	// DefaultGroupCommit is Config.GroupCommit when it is zero: the token
	// moves after every change.
	DefaultGroupCommit = 1
	// DefaultLeaseTTL is LeaseConfig.TTL when it is zero.
	DefaultLeaseTTL = 30 * time.Second
)

// Handler is the host's part of live sync: it is called once for every
// change the engine processed (shadow already stored, unless the group
// commit defers the write or the run is dry) and before the token moves past
// the change, so that a change reaches the handler at least once. An error
// goes through the task's ErrorPolicy; a panic is recovered into an error.
//
// With Config.Workers > 1 the handler is called from several goroutines at
// once, but never concurrently for the same object.
type Handler func(ctx context.Context, ev Event) error

// Event is what the handler is told about one change.
type Event struct {
	// Change is the change as the engine applied it: Object holds the
	// attributes the resource sent or, when it sent none, those a Get
	// returned; when that Get found the object gone, Type is
	// ChangeDelete.
	Change connector.Change
	// Before is the shadow before the change: nil when the object was
	// unknown. After is the shadow after it: nil when a delete found no
	// shadow. Both are copies the handler may keep; modifying them changes
	// nothing stored.
	Before, After *shadow.Shadow
	// Dry is true in a dry run: nothing was stored.
	Dry bool
	// Attempt is 0 for a change read from the stream and n ≥ 1 for the
	// n-th retry of a change the error policy set aside.
	Attempt int
}

// Action is what the error policy does with a change that failed.
type Action uint8

// The error policy actions.
const (
	// ActionStop stops the run; the token stays before the failed change,
	// so the next run starts with it. The zero value and the default.
	ActionStop Action = iota
	// ActionIgnore counts the change as ignored and goes on: the token
	// moves past it.
	ActionIgnore
	// ActionSetAside stores the change in the token store's side list and
	// goes on; the next run offers it again before the stream, counting
	// attempts, until it succeeds or ErrorRule.MaxAttempts is reached.
	// Later changes of the same object wait in the side list behind it,
	// so that one object's changes are never applied out of order. A
	// retry that fails with an error the policy stops on stops the run
	// before the stream; the change stays set aside (Task.DropSetAside
	// removes it).
	ActionSetAside
	// ActionStopAfter counts the change as failed and goes on until
	// ErrorRule.StopAfter errors matched the rule in one run; that error
	// stops the run as ActionStop does. Changes skipped before are lost to
	// the stream (the host sees them through Observer.ChangeFailed).
	ActionStopAfter
)

// String returns the Action as text for logs and errors.
func (a Action) String() string {
	switch a {
	case ActionStop:
		return "stop"
	case ActionIgnore:
		return "ignore"
	case ActionSetAside:
		return "set aside"
	case ActionStopAfter:
		return "stop after"
	}
	return fmt.Sprintf("Action(%d)", a)
}

// ErrorRule matches failed changes by error category and change type and
// names the action to take.
type ErrorRule struct {
	// Categories the rule matches (connector.Classify of the error); empty
	// matches every category. A malformed change is CategorySchema.
	Categories []connector.Category
	// ChangeTypes the rule matches; empty matches every type.
	ChangeTypes []connector.ChangeType
	// Action to take.
	Action Action
	// StopAfter is, for ActionStopAfter, how many errors matched by this
	// rule stop the run (≥ 1). Must be 0 for other actions.
	StopAfter int
	// MaxAttempts is, for ActionSetAside, how many failed attempts a
	// change may have before it is given up (removed from the side list,
	// counted as failed, reported through Observer.SetAsideGivenUp);
	// 0 means no limit. Must be 0 for other actions.
	MaxAttempts int
}

func (r *ErrorRule) matches(cat connector.Category, typ connector.ChangeType) bool {
	if len(r.Categories) > 0 {
		found := false
		for _, c := range r.Categories {
			if c == cat {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(r.ChangeTypes) > 0 {
		for _, t := range r.ChangeTypes {
			if t == typ {
				return true
			}
		}
		return false
	}
	return true
}

// ErrorPolicy decides what a failed change does to the run. The first rule
// that matches decides; when none does, the run stops (ActionStop). The zero
// value stops on the first error.
type ErrorPolicy struct {
	Rules []ErrorRule
}

func (p ErrorPolicy) validate() error {
	var errs []error
	for i, r := range p.Rules {
		field := fmt.Sprintf("ErrorPolicy.Rules[%d]", i)
		if r.Action > ActionStopAfter {
			errs = append(errs, fmt.Errorf("livesync: %s.Action %d is unknown", field, r.Action))
		}
		switch {
		case r.Action == ActionStopAfter && r.StopAfter < 1:
			errs = append(errs, fmt.Errorf("livesync: %s.StopAfter is %d; ActionStopAfter needs 1 or more", field, r.StopAfter))
		case r.Action != ActionStopAfter && r.StopAfter != 0:
			errs = append(errs, fmt.Errorf("livesync: %s.StopAfter is %d but Action is %s", field, r.StopAfter, r.Action))
		}
		switch {
		case r.MaxAttempts < 0:
			errs = append(errs, fmt.Errorf("livesync: %s.MaxAttempts is negative (%d)", field, r.MaxAttempts))
		case r.Action != ActionSetAside && r.MaxAttempts != 0:
			errs = append(errs, fmt.Errorf("livesync: %s.MaxAttempts is %d but Action is %s", field, r.MaxAttempts, r.Action))
		}
		for _, t := range r.ChangeTypes {
			if t < connector.ChangeCreate || t > connector.ChangeCreateOrModify {
				errs = append(errs, fmt.Errorf("livesync: %s.ChangeTypes holds unknown type %d", field, t))
			}
		}
		for _, c := range r.Categories {
			if c > connector.CategoryPermission {
				errs = append(errs, fmt.Errorf("livesync: %s.Categories holds unknown category %d", field, c))
			}
		}
	}
	return errors.Join(errs...)
}

// DeleteGuard stops a run that would apply a burst of deletes, like
// reconciliation's guard: when a fetch would bring the run's deletes above
// MaxDeletes, the run stops before processing that fetch (the token stays),
// the host is told through Observer.DeleteGuardTripped, and Run returns
// ErrDeleteGuard. Later runs stop the same way until an operator calls
// Task.OverrideDeleteGuard.
type DeleteGuard struct {
	// MaxDeletes is the most deletes one run may apply; 0 disables the
	// guard. Default 0.
	MaxDeletes int
}

// LeaseConfig makes a task single-runner across processes: a run takes the
// lease named after the task's TokenKey first, renews it while it works,
// and moves the token only with a write fenced by the lease, so a runner
// that lost its lease cannot move the token.
type LeaseConfig struct {
	// Leaser hands out the lease. Default: Config.Store, which must then
	// implement shadow.Leaser.
	Leaser shadow.Leaser
	// Owner names this runner (host and process, say). Required.
	Owner string
	// TTL is how long the lease lasts without renewal; the run renews it
	// when half has passed. Default DefaultLeaseTTL.
	TTL time.Duration
}

// Observer receives the task's events for the host. Every field is optional;
// the funcs are called synchronously from the run (with Workers > 1, from
// its goroutines) and MUST NOT block for long.
type Observer struct {
	// RunStarted is called when a run begins.
	RunStarted func(key TokenKey)
	// RunFinished is called when a run ends, with its result and error.
	RunFinished func(key TokenKey, r Result, err error)
	// ChangeFailed is called for every change that failed, with the
	// error and the action the policy took (after a set-aside change is
	// given up, SetAsideGivenUp is called as well).
	ChangeFailed func(key TokenKey, c connector.Change, err error, a Action)
	// SetAsideGivenUp is called when a set-aside change reached its
	// rule's MaxAttempts and was dropped.
	SetAsideGivenUp func(key TokenKey, c SetAsideChange)
	// DeleteGuardTripped is called when the delete guard stopped a run:
	// deletes is how many the run would have applied.
	DeleteGuardTripped func(key TokenKey, deletes, max int)
	// TokenMoved is called after the stored token moved.
	TokenMoved func(key TokenKey, from, to connector.Token)
}

// Config configures a Task. Required: ResourceID, Class, Connector (a
// connector.LiveSyncer), Store and Tokens.
type Config struct {
	// BatchSize > 0 processes at most that many changes from the stream in
	// a run, leaving the rest for the next run. Allowed only when the
	// connector's tokens are precise. Default 0 (no limit).
	BatchSize int
	// Class is the object class whose changes the task follows. Required.
	Class connector.ObjectClass
	// Clock is the time source. Default: the wall clock.
	Clock clock.Clock
	// Connector is the resource; it MUST implement connector.LiveSyncer.
	// Required.
	Connector connector.Connector
	// DeleteGuard stops runs with a burst of deletes. Default: off.
	DeleteGuard DeleteGuard
	// DryRun processes changes without storing anything: shadows and the
	// side list are left alone, the handler sees Event.Dry, and the token
	// stays unless UpdateTokenInDryRun. Default false.
	DryRun bool
	// ErrorPolicy decides what a failed change does. Default: stop on the
	// first error.
	ErrorPolicy ErrorPolicy
	// FetchSize is the most changes asked for in one fetch; 0 lets the
	// connector choose. Default 0.
	FetchSize int
	// GroupCommit is how many processed changes share one commit. With
	// precise tokens the token moves once per group, so a crash repeats
	// at most one group, and larger groups mean fewer token writes (on a
	// SQL store, one transaction per group instead of two per change).
	// When Store implements GroupCommitter (or shadow.Batcher) and
	// Workers ≤ 1, the group's shadow writes go in the same transaction
	// as the token (with a Batcher, in one transaction just before the
	// token). A group whose commit meets a concurrent write to one of its
	// shadows is stored change by change instead. A GroupCommitter store
	// MUST keep the tokens that Tokens reads. Default DefaultGroupCommit
	// (1).
	GroupCommit int
	// Handler is called for every processed change. Default: none (the
	// task only keeps shadows).
	Handler Handler
	// Kind and Intent are stored on the shadows the task creates (the
	// host's classification; umbra never reads them). Default empty.
	Kind, Intent string
	// Lease, when set, makes the task single-runner across processes.
	// Tokens must then implement FencedTokenStore. Default: nil.
	Lease *LeaseConfig
	// Logger receives run summaries and failures. Default: discard.
	Logger *slog.Logger
	// Observer receives the task's events. Default: none.
	Observer Observer
	// ResourceID names the resource. Required.
	ResourceID string
	// StartFromBeginning makes the first run (no stored token) process
	// the stream from its beginning instead of taking the current token.
	// Default false.
	StartFromBeginning bool
	// Store keeps the shadows. Required.
	Store shadow.Store
	// TaskName tells apart several tasks on one resource and class (it is
	// part of the TokenKey). Default DefaultTaskName.
	TaskName string
	// Tokens keeps the token and the side list of set-aside changes.
	// Required.
	Tokens TokenStore
	// UpdateTokenInDryRun moves the token in a dry run as a real run
	// would. Default false.
	UpdateTokenInDryRun bool
	// Workers > 1 processes changes in parallel: changes of one object
	// (same UID, or same Name when there is no UID) in stream order on
	// one worker; the stored token is the highest below which every
	// change is done. A resource whose changes carry no UID and that
	// renames objects should keep one worker: a renamed object's later
	// changes may land on another worker. Default 1.
	Workers int
}

// validate reports every problem of c at once and fills defaults in the
// returned copy.
func (c Config) validate() (Config, connector.LiveSyncer, error) {
	var errs []error
	if c.ResourceID == "" {
		errs = append(errs, errors.New("livesync: ResourceID is empty"))
	}
	if c.Class == "" {
		errs = append(errs, errors.New("livesync: Class is empty"))
	}
	var ls connector.LiveSyncer
	if c.Connector == nil {
		errs = append(errs, errors.New("livesync: Connector is nil"))
	} else if l, ok := c.Connector.(connector.LiveSyncer); ok {
		ls = l
	} else {
		errs = append(errs, fmt.Errorf("livesync: Connector %T does not implement connector.LiveSyncer", c.Connector))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("livesync: Store is nil"))
	}
	if c.Tokens == nil {
		errs = append(errs, errors.New("livesync: Tokens is nil"))
	}
	switch {
	case c.BatchSize < 0:
		errs = append(errs, fmt.Errorf("livesync: BatchSize is negative (%d)", c.BatchSize))
	case c.BatchSize > 0 && ls != nil && !ls.PreciseTokens():
		errs = append(errs, fmt.Errorf("livesync: BatchSize %d needs precise tokens, and connector %T's tokens are not precise", c.BatchSize, c.Connector))
	}
	if c.FetchSize < 0 {
		errs = append(errs, fmt.Errorf("livesync: FetchSize is negative (%d)", c.FetchSize))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("livesync: Workers is negative (%d)", c.Workers))
	}
	if c.GroupCommit < 0 {
		errs = append(errs, fmt.Errorf("livesync: GroupCommit is negative (%d)", c.GroupCommit))
	}
	if c.DeleteGuard.MaxDeletes < 0 {
		errs = append(errs, fmt.Errorf("livesync: DeleteGuard.MaxDeletes is negative (%d)", c.DeleteGuard.MaxDeletes))
	}
	if err := c.ErrorPolicy.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Lease != nil {
		l := *c.Lease
		if l.Leaser == nil {
			if lr, ok := c.Store.(shadow.Leaser); ok {
				l.Leaser = lr
			} else if c.Store != nil {
				errs = append(errs, fmt.Errorf("livesync: Lease.Leaser is nil and Store %T does not implement shadow.Leaser", c.Store))
			}
		}
		if l.Owner == "" {
			errs = append(errs, errors.New("livesync: Lease.Owner is empty"))
		}
		if l.TTL < 0 {
			errs = append(errs, fmt.Errorf("livesync: Lease.TTL is negative (%s)", l.TTL))
		} else if l.TTL == 0 {
			l.TTL = DefaultLeaseTTL
		}
		if _, ok := c.Tokens.(FencedTokenStore); !ok && c.Tokens != nil {
			errs = append(errs, fmt.Errorf("livesync: Lease is set but Tokens %T does not implement FencedTokenStore", c.Tokens))
		}
		c.Lease = &l
	}
	if err := errors.Join(errs...); err != nil {
		return c, nil, err
	}
	if c.TaskName == "" {
		c.TaskName = DefaultTaskName
	}
	if c.GroupCommit == 0 {
		c.GroupCommit = DefaultGroupCommit
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	c.Clock = clock.Or(c.Clock)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, ls, nil
}
