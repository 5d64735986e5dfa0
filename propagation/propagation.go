// Package propagation is the propagation task: it executes the operations
// that operation grouping queued (shadow.OpGrouped), merged, one connector
// operation per shadow, for one resource or for every resource a selector
// picks (the multi-resource task of the seed).
//
// A run selects, per resource, the shadows whose oldest unfinished grouped
// operation is older than the resource's OperationGroupingInterval — in the
// store's query vocabulary (Unfinished, PendingType grouped,
// OldestPendingBefore), so a SQL store serves it from an index — and hands
// each to consistency.Engine.PropagateShadow, which merges the shadow's
// grouped deltas (connector.Merge), executes the merged delta once and
// records the outcome on every merged operation:
//
//   - a merge that does nothing (an add then a delete) completes the
//     operations without any call;
//   - a communication failure turns them into retry operations, which the
//     refresh task carries out;
//   - an asynchronous or manual resource turns them into async operations,
//     which the refresh task polls;
//   - executed operations stay in the shadow for the resource's
//     PendingOperationGracePeriod (or its retention period, when longer),
//     and a refresh drops them after that.
//
// Schedule, concurrency, progress, claims and the result's shape are those
// of the refresh task (they are one piece of code).
package propagation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/task"
	"github.com/umbra-idm/umbra/shadow"
)

// Defaults of Config (shared by the refresh and propagation tasks).
const (
	ConcurrencyDefault = 8
	PageSizeDefault    = 500
	ClaimTTLDefault    = 5 * time.Minute
	MaxErrorsDefault   = 10
)

// The shared runner applies the same defaults; fail to compile if they part.
var (
	_ [ConcurrencyDefault - task.ConcurrencyDefault]struct{}
	_ [task.ConcurrencyDefault - ConcurrencyDefault]struct{}
	_ [PageSizeDefault - task.PageSizeDefault]struct{}
	_ [task.PageSizeDefault - PageSizeDefault]struct{}
	_ [ClaimTTLDefault - task.ClaimTTLDefault]struct{}
	_ [task.ClaimTTLDefault - ClaimTTLDefault]struct{}
	_ [MaxErrorsDefault - task.MaxErrorsDefault]struct{}
	_ [task.MaxErrorsDefault - MaxErrorsDefault]struct{}
)

// ErrStarted is returned by Start when the task's schedule is running.
var ErrStarted = task.ErrStarted

// Counts are what a run did, for one resource or in total.
type Counts struct {
	// Examined is how many shadows were looked at.
	Examined int
	// Propagated counts shadows whose grouped operations were executed
	// (with a call, or completed by an empty merge); Operations counts the
	// grouped operations they held.
	Propagated, Operations int
	// Calls counts shadows for which the connector was called (one merged
	// operation each); Empty those whose merge did nothing, completed
	// without a call.
	Calls, Empty int
	// Completed counts shadows whose merged operation took effect (or was
	// empty); InProgress those the resource accepted for later (async,
	// manual); Postponed those turned into retry operations (resource
	// down); Failed those that failed for good.
	Completed, InProgress, Postponed, Failed int
	// Skipped counts shadows with nothing done: not due yet, behind
	// unfinished operations of another type, resource down or in
	// maintenance, shadow gone.
	Skipped int
	// Errors counts shadows whose propagation returned an error (see
	// Result.Errors).
	Errors int
}

// Add returns the field-by-field sum of c and o.
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Examined:   c.Examined + o.Examined,
		Propagated: c.Propagated + o.Propagated,
		Operations: c.Operations + o.Operations,
		Calls:      c.Calls + o.Calls,
		Empty:      c.Empty + o.Empty,
		Completed:  c.Completed + o.Completed,
		InProgress: c.InProgress + o.InProgress,
		Postponed:  c.Postponed + o.Postponed,
		Failed:     c.Failed + o.Failed,
		Skipped:    c.Skipped + o.Skipped,
		Errors:     c.Errors + o.Errors,
	}
}

// Result is what one run did: Started and Finished (clock times), Total
// (Counts summed), Resources (Counts per resource ID), Errors (the first
// Config.MaxErrors failures, each an ItemError naming resource and shadow)
// and ErrorCount (all of them). Quarantined is always nil (quarantine is
// judged by refresh runs). Result.Err joins the recorded errors.
type Result = task.Result[Counts]

// Progress is reported after every shadow: Done, Total (when known, else
// 0), Elapsed and Rate (shadows per second).
type Progress = task.Progress

// ItemError is the failure of one shadow's propagation.
type ItemError = task.ItemError

// Config configures a Task. Fields are alphabetical; zero values take the
// documented defaults.
type Config struct {
	// ClaimTTL is how long a claimed shadow stays claimed when Owner is
	// set. Default ClaimTTLDefault (5 min).
	ClaimTTL time.Duration
	// Clock is the time source for the selection, progress and the
	// schedule. Default: the engine's clock.
	Clock connector.Clock
	// Concurrency is how many shadows are propagated at once. Default
	// ConcurrencyDefault (8).
	Concurrency int
	// Engine executes the operations. Required.
	Engine *consistency.Engine
	// Force executes grouped operations whatever their age (an operator's
	// "flush now"). Default false: only those older than the resource's
	// OperationGroupingInterval.
	Force bool
	// Logger receives the task's logs. Default: discard.
	Logger *slog.Logger
	// MaxErrors is how many failures Result.Errors keeps (all are
	// counted). Default MaxErrorsDefault (10).
	MaxErrors int
	// OnRun, when set, is called with the outcome of every scheduled run
	// (not of calls to Run), from the schedule's goroutine.
	OnRun func(Result, error)
	// Owner names this process when several share one store: shadows are
	// claimed in batches (the store MUST implement shadow.Claimer). Default
	// "" (no claims).
	Owner string
	// PageSize is how many shadows one store query returns. Default
	// PageSizeDefault (500).
	PageSize int
	// Progress, when set, is called after every shadow, one call at a
	// time; it MUST be quick.
	Progress func(Progress)
	// ResourceIDs are the resources to propagate, in this order. Set
	// ResourceIDs or Selector, not both. Default (neither): every resource
	// of the engine.
	ResourceIDs []string
	// Selector picks the resources to propagate among the engine's, at the
	// start of every run (the multi-resource task). It MUST be quick and
	// safe for concurrent use.
	Selector func(resourceID string) bool
}

// Task is the propagation task. It is safe for concurrent use; runs never
// overlap (a Run waits for the one under way).
type Task struct {
	engine      *consistency.Engine
	resourceIDs []string
	selector    func(string) bool
	force       bool
	runner      task.Runner[Counts]
	onRun       func(Result, error)
	gate        *task.Gate
	sched       *task.Scheduler
}

// New returns a task for cfg, or an error naming every invalid field.
func New(cfg Config) (*Task, error) {
	var errs []error
	if cfg.Engine == nil {
		errs = append(errs, errors.New("Engine is nil"))
	}
	if len(cfg.ResourceIDs) > 0 && cfg.Selector != nil {
		errs = append(errs, errors.New("ResourceIDs and Selector are both set: set one"))
	}
	r := task.Runner[Counts]{Name: "propagation", Logger: cfg.Logger, Progress: cfg.Progress,
		Concurrency: cfg.Concurrency, PageSize: cfg.PageSize, Owner: cfg.Owner, ClaimTTL: cfg.ClaimTTL,
		MaxErrors: cfg.MaxErrors, Clock: cfg.Clock}
	if cfg.Engine != nil {
		r.Store = cfg.Engine.Store()
		if r.Clock == nil {
			r.Clock = cfg.Engine.Clock()
		}
		known := cfg.Engine.ResourceIDs()
		for i, id := range cfg.ResourceIDs {
			if !slices.Contains(known, id) {
				errs = append(errs, fmt.Errorf("ResourceIDs[%d] = %q: not a resource of the engine", i, id))
			} else if slices.Index(cfg.ResourceIDs, id) < i {
				errs = append(errs, fmt.Errorf("ResourceIDs[%d] = %q: repeated", i, id))
			}
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("propagation: invalid config: %w", err)
	}
	t := &Task{engine: cfg.Engine, resourceIDs: slices.Clone(cfg.ResourceIDs), selector: cfg.Selector,
		force: cfg.Force, onRun: cfg.OnRun, gate: task.NewGate()}
	t.runner = r.WithDefaults()
	t.sched = task.NewScheduler("propagation", t.runner.Clock, t.runner.Logger, t.scheduled)
	return t, nil
}

// sources returns the queries of a run starting at now: per selected
// resource, the shadows whose oldest unfinished grouped operation was
// requested at least the grouping interval before now.
func (t *Task) sources(now time.Time) []task.Source {
	ids := t.resourceIDs
	if len(ids) == 0 {
		for _, id := range t.engine.ResourceIDs() {
			if t.selector == nil || t.selector(id) {
				ids = append(ids, id)
			}
		}
	}
	out := make([]task.Source, 0, len(ids))
	for _, id := range ids {
		q := shadow.Query{ResourceID: id, Unfinished: true, PendingType: shadow.OpGrouped}
		if !t.force {
			s, err := t.engine.Settings(id)
			if err != nil {
				continue // the IDs come from the engine
			}
			// PropagateShadow executes when oldest+interval is not after
			// now, while OldestPendingBefore is strict: one microsecond
			// more selects the boundary in stores that keep microseconds
			// (SQL) as in those that keep nanoseconds. A shadow selected
			// less than a microsecond early is skipped as not due.
			q.OldestPendingBefore = now.Add(-s.OperationGroupingInterval + time.Microsecond)
		}
		out = append(out, task.Source{ResourceID: id, Query: q})
	}
	return out
}

// Run propagates the due grouped operations of the selected resources once
// and returns what it did. It waits for a run under way to end first. When
// ctx is done it stops within one shadow per worker and returns what was
// done with ctx's error. Failures of single shadows are in the result, not
// the error; the error reports a run that could not complete (the store
// failed, ctx ended).
func (t *Task) Run(ctx context.Context) (Result, error) {
	if err := t.gate.Enter(ctx); err != nil {
		return Result{}, fmt.Errorf("propagation: waiting for the run under way: %w", err)
	}
	defer t.gate.Leave()
	res, err := t.runner.Run(ctx, t.sources(t.runner.Clock.Now()), t.propagateOne)
	t.runner.Logger.Info("propagation run finished", "examined", res.Total.Examined,
		"propagated", res.Total.Propagated, "operations", res.Total.Operations, "calls", res.Total.Calls,
		"empty", res.Total.Empty, "inProgress", res.Total.InProgress, "postponed", res.Total.Postponed,
		"failed", res.Total.Failed, "skipped", res.Total.Skipped, "errors", res.ErrorCount,
		"duration", res.Finished.Sub(res.Started), "error", err)
	return res, err
}

func (t *Task) propagateOne(ctx context.Context, sh *shadow.Shadow) (Counts, error) {
	pr, err := t.engine.PropagateShadow(ctx, sh.ID, t.force)
	c := Counts{Examined: 1}
	if pr.Skipped != "" {
		c.Skipped = 1
	} else if pr.Operations > 0 {
		c.Propagated, c.Operations = 1, pr.Operations
		if pr.Called {
			c.Calls = 1
		} else {
			c.Empty = 1
		}
		switch pr.Status {
		case consistency.Done:
			c.Completed = 1
		case consistency.InProgress:
			c.InProgress = 1
		case consistency.Pending:
			c.Postponed = 1
		case consistency.Failed:
			c.Failed = 1
		}
	}
	if err != nil {
		c.Errors = 1
	}
	return c, err
}

func (t *Task) scheduled(ctx context.Context) {
	res, err := t.Run(ctx)
	if t.onRun != nil {
		t.onRun(res, err)
	}
}

// Start runs the task on a schedule in the background: the first run at
// once, then one every interval counted from the first (runs never
// overlap; a planned time that passes during a run is skipped); interval 0
// runs once. The schedule ends at Stop or when ctx is done. Outcomes go to
// Config.OnRun. Start fails with ErrStarted while the schedule runs.
func (t *Task) Start(ctx context.Context, interval time.Duration) error {
	return t.sched.Start(ctx, interval)
}

// Stop ends the schedule, cancelling a run under way (it stops within one
// shadow) and waiting for it. Stop before Start and a second Stop do
// nothing. It MUST NOT be called from OnRun or Progress.
func (t *Task) Stop() { t.sched.Stop() }

// Suspend stops scheduled runs until Resume; a run under way finishes.
func (t *Task) Suspend() { t.sched.Suspend() }

// Resume continues scheduled runs from the next planned time.
func (t *Task) Resume() { t.sched.Resume() }

// Suspended reports whether the schedule is suspended.
func (t *Task) Suspended() bool { return t.sched.Suspended() }

// Running reports whether the schedule is started and has not ended.
func (t *Task) Running() bool { return t.sched.Running() }

// RunNow asks the running schedule for a run at once (after the run under
// way), even while suspended. Without a running schedule it does nothing;
// call Run instead.
func (t *Task) RunNow() { t.sched.RunNow() }
