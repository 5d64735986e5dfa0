// Package task is the machinery that the refresh and propagation tasks
// share, so that both have one schedule, one way of working through
// shadows, one progress report and one result shape:
//
//   - Runner works through the shadows that a list of store queries
//     selects, page by page (keyset paging on the shadow ID), with bounded
//     concurrency, cancellation through the context, optional claims for
//     several processes sharing one store (shadow.Claimer), a progress
//     callback, and a Result with counts per resource and in total and the
//     first errors.
//   - Scheduler runs a function once or on a fixed grid of planned times:
//     runs never overlap, the grid never drifts (the next run is planned
//     from the previous planned time, not from the end of the run), and it
//     can be suspended, resumed and told to run now. It waits only on the
//     clock's After, so tests drive it with a fake clock.
//   - Gate keeps a task's runs from overlapping when a host calls Run while
//     a scheduled run is under way.
//
// The public packages re-export Progress, Result and ItemError as type
// aliases.
package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/internal/clock"
	"github.com/umbra-idm/umbra/shadow"
)

// Defaults shared by the tasks.
const (
	ConcurrencyDefault = 8
	PageSizeDefault    = 500
	ClaimTTLDefault    = 5 * time.Minute
	MaxErrorsDefault   = 10
)

// releaseBatch is how many finished items' claims one Release drops.
const releaseBatch = 64

// Progress is what a task reports after each shadow it worked on.
type Progress struct {
	// Done is how many shadows the run has finished so far.
	Done int
	// Total is how many shadows the run's queries selected when it
	// started (Store.Count): an estimate, since shadows change while the
	// run works; Done may pass it. Zero when unknown (claiming runs, whose
	// share of the work is not known in advance).
	Total int
	// Elapsed is the clock time since the run started.
	Elapsed time.Duration
	// Rate is Done per second of Elapsed; zero until clock time has
	// passed.
	Rate float64
}

// ItemError is the failure of one shadow within a run.
type ItemError struct {
	ResourceID string
	ShadowID   string
	Err        error
}

// Error returns the message of the ItemError.
func (e ItemError) Error() string {
	return fmt.Sprintf("resource %q, shadow %s: %v", e.ResourceID, e.ShadowID, e.Err)
}

// Unwrap returns the underlying error.
func (e ItemError) Unwrap() error { return e.Err }

// Adder is implemented by a task's counts: Add returns the field-by-field
// sum of the receiver and o.
type Adder[C any] interface {
	Add(o C) C
}

// Result is what one run of a task did.
type Result[C Adder[C]] struct {
	// Started and Finished are the clock times of the run's start and end.
	Started, Finished time.Time
	// Total is the sum of every resource's counts.
	Total C
	// Resources holds the counts of each resource the run worked on.
	Resources map[string]C
	// Errors holds the first failures (up to the task's MaxErrors), in the
	// order they happened; ErrorCount counts all of them.
	Errors     []ItemError
	ErrorCount int
	// Quarantined lists the resources that entered quarantine when the run
	// ended (refresh runs only).
	Quarantined []string
}

// Err joins the recorded item errors into one error, nil when there were
// none. Errors beyond the recorded ones are summarized by count.
func (r Result[C]) Err() error {
	if r.ErrorCount == 0 {
		return nil
	}
	errs := make([]error, 0, len(r.Errors)+1)
	for _, e := range r.Errors {
		errs = append(errs, e)
	}
	if more := r.ErrorCount - len(r.Errors); more > 0 {
		errs = append(errs, fmt.Errorf("and %d more", more))
	}
	return errors.Join(errs...)
}

// Source is one query of a run, with the resource whose counts its shadows
// add to.
type Source struct {
	ResourceID string
	Query      shadow.Query
}

// ItemFunc works on one shadow and returns what it did. An error is recorded
// in the result (its counts should say so too); it does not stop the run.
type ItemFunc[C Adder[C]] func(ctx context.Context, sh *shadow.Shadow) (C, error)

// Runner works through shadows. Fields mirror the public task configs;
// zero values take the defaults (see WithDefaults). A Runner is not modified by
// Run and may run several times, one run at a time (see Gate).
type Runner[C Adder[C]] struct {
	// Name names the task in logs ("refresh", "propagation").
	Name     string
	Store    shadow.Store
	Clock    clock.Clock
	Logger   *slog.Logger
	Progress func(Progress)
	// Concurrency is how many shadows are worked on at once.
	Concurrency int
	// PageSize is how many shadows one List (or Claim) returns.
	PageSize int
	// Owner, when set, makes the run claim its shadows (the store MUST
	// implement shadow.Claimer; Validate checks) for ClaimTTL.
	Owner    string
	ClaimTTL time.Duration
	// MaxErrors is how many item errors Result.Errors keeps.
	MaxErrors int
}

// Validate reports every invalid field at once, naming each field and value.
// Zero values are valid (they mean the defaults).
func (r *Runner[C]) Validate() error {
	var errs []error
	if r.Store == nil {
		errs = append(errs, errors.New("Store is nil"))
	}
	if r.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("Concurrency = %d: must not be negative (0 means %d)", r.Concurrency, ConcurrencyDefault))
	}
	if r.PageSize < 0 {
		errs = append(errs, fmt.Errorf("PageSize = %d: must not be negative (0 means %d)", r.PageSize, PageSizeDefault))
	}
	if r.ClaimTTL < 0 {
		errs = append(errs, fmt.Errorf("ClaimTTL = %s: must not be negative (0 means %s)", r.ClaimTTL, ClaimTTLDefault))
	}
	if r.ClaimTTL > 0 && r.Owner == "" {
		errs = append(errs, fmt.Errorf("ClaimTTL = %s: set without Owner", r.ClaimTTL))
	}
	if r.MaxErrors < 0 {
		errs = append(errs, fmt.Errorf("MaxErrors = %d: must not be negative (0 means %d)", r.MaxErrors, MaxErrorsDefault))
	}
	if r.Owner != "" && r.Store != nil {
		if _, ok := r.Store.(shadow.Claimer); !ok {
			errs = append(errs, fmt.Errorf("Owner = %q: the store (%T) does not implement shadow.Claimer", r.Owner, r.Store))
		}
	}
	return errors.Join(errs...)
}

// WithDefaults returns r with zero fields set to their defaults.
func (r Runner[C]) WithDefaults() Runner[C] {
	r.Clock = clock.Or(r.Clock)
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.Concurrency == 0 {
		r.Concurrency = ConcurrencyDefault
	}
	if r.PageSize == 0 {
		r.PageSize = PageSizeDefault
	}
	if r.ClaimTTL == 0 {
		r.ClaimTTL = ClaimTTLDefault
	}
	if r.MaxErrors == 0 {
		r.MaxErrors = MaxErrorsDefault
	}
	if r.Name == "" {
		r.Name = "task"
	}
	return r
}

// run is the state of one Run.
type run[C Adder[C]] struct {
	r       *Runner[C]
	started time.Time
	total   int

	mu   sync.Mutex
	res  Result[C]
	done int
}

// Run works through the shadows that sources select, in order, calling fn
// for each with at most Concurrency calls at once. Each shadow counts for
// its source's ResourceID.
//
// When ctx is done, no further shadow is started; the calls under way get
// the cancelled ctx and the run waits for them, so a run stops within one
// shadow per worker. Run then returns what was done and ctx's error. A
// failing List, Count or Claim ends the run with that error; failures of fn
// are recorded in the result and do not. The run's clock times come from
// Clock.
func (r *Runner[C]) Run(ctx context.Context, sources []Source, fn ItemFunc[C]) (Result[C], error) {
	rr := r.WithDefaults()
	st := &run[C]{r: &rr, started: rr.Clock.Now()}
	st.res = Result[C]{Started: st.started, Resources: make(map[string]C)}

	claimer, _ := rr.Store.(shadow.Claimer)
	claiming := rr.Owner != "" && claimer != nil
	if rr.Progress != nil && !claiming {
		for _, src := range sources {
			n, err := rr.Store.Count(ctx, src.Query)
			if err != nil {
				st.res.Finished = rr.Clock.Now()
				return st.res, fmt.Errorf("%s: counting shadows of resource %q: %w", rr.Name, src.ResourceID, err)
			}
			st.total += n
		}
	}

	var runErr error
	release := func(ids ...string) {
		if claiming && len(ids) > 0 {
			if err := claimer.Release(context.WithoutCancel(ctx), rr.Owner, ids...); err != nil {
				rr.Logger.Warn(rr.Name+": releasing claims failed", "owner", rr.Owner, "error", err)
			}
		}
	}
	// done collects the claims of finished items, released releaseBatch at
	// a time and at the end of the run: one store write per item would
	// cost as much as the item's own bookkeeping. The claims stay this
	// owner's a little longer, which keeps other owners off shadows this
	// run already handled.
	var doneMu sync.Mutex
	var done []string
	finished := func(id string) {
		if !claiming {
			return
		}
		doneMu.Lock()
		done = append(done, id)
		var batch []string
		if len(done) >= releaseBatch {
			batch, done = done, nil
		}
		doneMu.Unlock()
		release(batch...)
	}
	ids := func(page []*shadow.Shadow) []string {
		out := make([]string, len(page))
		for i, sh := range page {
			out[i] = sh.ID
		}
		return out
	}
	// Workers take items from work one after the other: a finished item's
	// worker picks up the next one at once, with no goroutine to start and
	// no semaphore between the two. They are started as the run needs
	// them, up to Concurrency.
	type item struct {
		resourceID string
		sh         *shadow.Shadow
	}
	work := make(chan item)
	var wg sync.WaitGroup
	workers := 0
	worker := func() {
		for it := range work {
			if ctx.Err() != nil {
				// Handed over as the run was cancelled: not started.
				release(it.sh.ID)
				continue
			}
			c, err := fn(ctx, it.sh)
			finished(it.sh.ID)
			st.record(ctx, it.resourceID, it.sh.ID, c, err)
		}
	}
sources:
	for _, src := range sources {
		q := src.Query
		q.After, q.Limit = "", rr.PageSize
		for {
			if ctx.Err() != nil {
				break sources
			}
			var page []*shadow.Shadow
			var err error
			if claiming {
				page, err = claimer.Claim(ctx, q, rr.Owner, rr.ClaimTTL, rr.PageSize)
				slices.SortFunc(page, func(a, b *shadow.Shadow) int { return strings.Compare(a.ID, b.ID) })
			} else {
				page, err = rr.Store.List(ctx, q)
			}
			if err != nil {
				if ctx.Err() == nil {
					runErr = fmt.Errorf("%s: selecting shadows of resource %q: %w", rr.Name, src.ResourceID, err)
				}
				break sources
			}
			for i, sh := range page {
				if ctx.Err() != nil {
					release(ids(page[i:])...)
					break sources
				}
				if workers < rr.Concurrency {
					select {
					case work <- item{src.ResourceID, sh}:
						continue
					default:
					}
					// Every worker is busy: start one more, up to
					// Concurrency.
					workers++
					wg.Go(worker)
				}
				select {
				case work <- item{src.ResourceID, sh}:
				case <-ctx.Done():
					release(ids(page[i:])...)
					break sources
				}
			}
			if len(page) < rr.PageSize {
				break
			}
			q.After = page[len(page)-1].ID
		}
	}
	close(work)
	wg.Wait()
	release(done...)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.res.Finished = rr.Clock.Now()
	if runErr == nil {
		runErr = ctx.Err()
	}
	return st.res, runErr
}

// record adds one item's outcome and reports progress. Progress calls are
// serialized.
func (st *run[C]) record(ctx context.Context, resourceID, shadowID string, c C, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.res.Resources[resourceID] = st.res.Resources[resourceID].Add(c)
	st.res.Total = st.res.Total.Add(c)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		st.res.ErrorCount++
		if len(st.res.Errors) < st.r.MaxErrors {
			st.res.Errors = append(st.res.Errors, ItemError{ResourceID: resourceID, ShadowID: shadowID, Err: err})
		}
		st.r.Logger.Warn(st.r.Name+": shadow failed", "resource", resourceID, "shadow", shadowID, "error", err)
	}
	st.done++
	if st.r.Progress != nil {
		elapsed := st.r.Clock.Now().Sub(st.started)
		p := Progress{Done: st.done, Total: st.total, Elapsed: elapsed}
		if elapsed > 0 {
			p.Rate = float64(st.done) / elapsed.Seconds()
		}
		st.r.Progress(p)
	}
}
