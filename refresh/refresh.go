// Package refresh is the shadow refresh task: it runs the one-shadow
// refresh of package consistency (retry due operations, ask the resource
// about async ones, drop completed operations after retention, delete dead
// shadows after theirs) over a selection of shadows, with bounded
// concurrency, progress reporting, cancellation, a summary of what it did,
// and a recurring schedule.
//
// # Which shadows
//
// A Selection says which shadows a run refreshes, in the store's query
// vocabulary so that a SQL store serves it from an index:
//
//   - Due (the default): shadows whose next pending work has fallen due
//     (Query.DueBy now) — the retries whose time came, the async operations
//     to poll, the completed operations and dead shadows whose retention
//     ended. This is the sustained-operation default: a run costs in
//     proportion to the due work, not to all shadows.
//   - Unfinished: every shadow with an unfinished pending operation, due or
//     not (the seed's "pendingOperation exists" filter).
//   - Forced: every shadow, pending operations or not (migrations, after a
//     configuration change).
//
// Each mode applies to every resource of the engine, or to the resources
// Selection.ResourceIDs names.
//
// # Running
//
// Run runs once. Start runs on a schedule (once, or every interval, never
// overlapping, never drifting) until Stop; Suspend, Resume and RunNow
// control it. After every run the task asks the engine to judge quarantine
// (consistency.Engine.CheckQuarantine), since quarantine is decided per
// refresh run.
//
// Several processes sharing one store split the work when each task has its
// own Owner and the store implements shadow.Claimer: batches of shadows are
// claimed instead of listed.
package refresh

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

// Mode says which shadows of the selected resources a run refreshes.
type Mode uint8

// The selection modes.
const (
	// Due selects shadows whose next pending work is due (NextDue not
	// after the run's start). The default.
	Due Mode = iota
	// Unfinished selects shadows with an unfinished pending operation.
	Unfinished
	// Forced selects every shadow, with pending operations or not.
	Forced
)

// String returns the Mode as text for logs and errors.
func (m Mode) String() string {
	switch m {
	case Due:
		return "due"
	case Unfinished:
		return "unfinished"
	case Forced:
		return "forced"
	}
	return fmt.Sprintf("Mode(%d)", m)
}

// Selection says which shadows a run refreshes. The zero value selects the
// due shadows of every resource.
type Selection struct {
	// Mode is which shadows of each resource. Default Due.
	Mode Mode
	// ResourceIDs restricts the run to these resources of the engine, in
	// this order. Default (empty): every resource, in ID order.
	ResourceIDs []string
}

// Counts are what a run did, for one resource or in total.
type Counts struct {
	// Examined is how many shadows were refreshed.
	Examined int
	// Retried counts retry attempts; Completed operations that finished
	// successfully; Failed those that failed for good; Abandoned those
	// given up after the maximum attempts; StillPending the unfinished
	// operations left after the refresh.
	Retried, Completed, Failed, Abandoned, StillPending int
	// AsyncChecked counts async status checks.
	AsyncChecked int
	// Dropped counts completed operations removed after retention.
	Dropped int
	// Deleted counts dead shadows deleted after retention.
	Deleted int
	// Skipped counts shadows whose due work (retries, async status
	// checks) was not attempted because their resource was down, broken
	// or in maintenance.
	Skipped int
	// Errors counts shadows whose refresh failed (see Result.Errors).
	Errors int
}

// Add returns the field-by-field sum of c and o.
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Examined:     c.Examined + o.Examined,
		Retried:      c.Retried + o.Retried,
		Completed:    c.Completed + o.Completed,
		Failed:       c.Failed + o.Failed,
		Abandoned:    c.Abandoned + o.Abandoned,
		StillPending: c.StillPending + o.StillPending,
		AsyncChecked: c.AsyncChecked + o.AsyncChecked,
		Dropped:      c.Dropped + o.Dropped,
		Deleted:      c.Deleted + o.Deleted,
		Skipped:      c.Skipped + o.Skipped,
		Errors:       c.Errors + o.Errors,
	}
}

// Result is what one run did: Started and Finished (clock times), Total
// (Counts summed), Resources (Counts per resource ID), Errors (the first
// Config.MaxErrors failures, each an ItemError naming resource and shadow)
// and ErrorCount (all of them), and Quarantined (the resources that entered
// quarantine after the run). Result.Err joins the recorded errors.
type Result = task.Result[Counts]

// Progress is reported after every shadow: Done, Total (when known, else
// 0), Elapsed and Rate (shadows per second).
type Progress = task.Progress

// ItemError is the failure of one shadow's refresh.
type ItemError = task.ItemError

// Config configures a Task. Fields are alphabetical; zero values take the
// documented defaults.
type Config struct {
	// ClaimTTL is how long a claimed shadow stays claimed when Owner is
	// set; it should exceed the time one refresh takes. Default
	// ClaimTTLDefault (5 min).
	ClaimTTL time.Duration
	// Clock is the time source for the selection (DueBy), progress and the
	// schedule. Default: the engine's clock.
	Clock connector.Clock
	// Concurrency is how many shadows are refreshed at once. Default
	// ConcurrencyDefault (8).
	Concurrency int
	// Engine refreshes each shadow. Required.
	Engine *consistency.Engine
	// Logger receives the task's logs. Default: discard.
	Logger *slog.Logger
	// MaxErrors is how many failures Result.Errors keeps (all are
	// counted). Default MaxErrorsDefault (10).
	MaxErrors int
	// OnRun, when set, is called with the outcome of every scheduled run
	// (not of calls to Run), from the schedule's goroutine.
	OnRun func(Result, error)
	// Owner names this process when several share one store: shadows are
	// claimed in batches (the store MUST implement shadow.Claimer) so that
	// no two processes refresh one shadow at once. Default "" (no claims).
	Owner string
	// PageSize is how many shadows one store query returns. Default
	// PageSizeDefault (500).
	PageSize int
	// Progress, when set, is called after every shadow, one call at a
	// time; it MUST be quick.
	Progress func(Progress)
	// Selection says which shadows. Default: the due shadows of every
	// resource.
	Selection Selection
}

// Task is the refresh task. It is safe for concurrent use; runs never
// overlap (a Run waits for the one under way).
type Task struct {
	engine    *consistency.Engine
	selection Selection
	runner    task.Runner[Counts]
	onRun     func(Result, error)
	gate      *task.Gate
	sched     *task.Scheduler
}

// New returns a task for cfg, or an error naming every invalid field.
func New(cfg Config) (*Task, error) {
	var errs []error
	if cfg.Engine == nil {
		errs = append(errs, errors.New("Engine is nil"))
	}
	if cfg.Selection.Mode > Forced {
		errs = append(errs, fmt.Errorf("Selection.Mode = %d: not Due, Unfinished or Forced", cfg.Selection.Mode))
	}
	r := task.Runner[Counts]{Name: "refresh", Logger: cfg.Logger, Progress: cfg.Progress,
		Concurrency: cfg.Concurrency, PageSize: cfg.PageSize, Owner: cfg.Owner, ClaimTTL: cfg.ClaimTTL,
		MaxErrors: cfg.MaxErrors, Clock: cfg.Clock}
	if cfg.Engine != nil {
		r.Store = cfg.Engine.Store()
		if r.Clock == nil {
			r.Clock = cfg.Engine.Clock()
		}
		known := cfg.Engine.ResourceIDs()
		for i, id := range cfg.Selection.ResourceIDs {
			if !slices.Contains(known, id) {
				errs = append(errs, fmt.Errorf("Selection.ResourceIDs[%d] = %q: not a resource of the engine", i, id))
			} else if slices.Index(cfg.Selection.ResourceIDs, id) < i {
				errs = append(errs, fmt.Errorf("Selection.ResourceIDs[%d] = %q: repeated", i, id))
			}
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("refresh: invalid config: %w", err)
	}
	t := &Task{engine: cfg.Engine, selection: cfg.Selection, onRun: cfg.OnRun, gate: task.NewGate()}
	t.selection.ResourceIDs = slices.Clone(cfg.Selection.ResourceIDs)
	t.runner = r.WithDefaults()
	t.sched = task.NewScheduler("refresh", t.runner.Clock, t.runner.Logger, t.scheduled)
	return t, nil
}

// sources returns the queries a run starting at now uses, one per
// resource: the task's selection in the store's query vocabulary.
func (t *Task) sources(now time.Time) []task.Source {
	ids := t.selection.ResourceIDs
	if len(ids) == 0 {
		ids = t.engine.ResourceIDs()
	}
	out := make([]task.Source, 0, len(ids))
	for _, id := range ids {
		q := shadow.Query{ResourceID: id}
		switch t.selection.Mode {
		case Due:
			q.DueBy = now
		case Unfinished:
			q.Unfinished = true
		}
		out = append(out, task.Source{ResourceID: id, Query: q})
	}
	return out
}

// Run refreshes the selected shadows once and returns what it did. It waits
// for a run under way to end first. When ctx is done it stops within one
// shadow per worker and returns what was done with ctx's error. Failures of
// single shadows are in the result, not the error; the error reports a run
// that could not complete (the store failed, ctx ended). After the run,
// quarantine is judged and Result.Quarantined lists the resources that
// entered it.
func (t *Task) Run(ctx context.Context) (Result, error) {
	if err := t.gate.Enter(ctx); err != nil {
		return Result{}, fmt.Errorf("refresh: waiting for the run under way: %w", err)
	}
	defer t.gate.Leave()
	srcs := t.sources(t.runner.Clock.Now())
	res, err := t.runner.Run(ctx, srcs, t.refreshOne)
	res.Quarantined = t.engine.CheckQuarantine()
	t.runner.Logger.Info("refresh run finished", "mode", t.selection.Mode, "examined", res.Total.Examined,
		"retried", res.Total.Retried, "completed", res.Total.Completed, "failed", res.Total.Failed,
		"abandoned", res.Total.Abandoned, "stillPending", res.Total.StillPending, "deleted", res.Total.Deleted,
		"errors", res.ErrorCount, "quarantined", res.Quarantined, "duration", res.Finished.Sub(res.Started), "error", err)
	return res, err
}

func (t *Task) refreshOne(ctx context.Context, sh *shadow.Shadow) (Counts, error) {
	rr, err := t.engine.RefreshLoaded(ctx, sh)
	c := Counts{Examined: 1, Retried: rr.Retried, Completed: rr.Completed, Failed: rr.Failed,
		Abandoned: rr.Abandoned, StillPending: rr.StillPending, AsyncChecked: rr.AsyncChecked, Dropped: rr.Dropped}
	if rr.Deleted {
		c.Deleted = 1
	}
	if rr.Skipped != "" {
		c.Skipped = 1
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
// once, then one every interval counted from the first (a run that
// outlasts the interval makes the runs it overlapped be skipped, never
// doubled); interval 0 runs once. The schedule ends at Stop or when ctx is
// done. Outcomes go to Config.OnRun. Start fails with ErrStarted while the
// schedule runs.
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
