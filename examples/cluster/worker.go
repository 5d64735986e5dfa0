package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/sqltable"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
)

// workerConfig are a worker's flags.
type workerConfig struct {
	name                                            string
	latency, round, claimTTL, leaseTTL, retryPeriod time.Duration
	concurrency, batch                              int
}

func (w workerConfig) validate() error {
	var errs []error
	if w.name == "" {
		errs = append(errs, errors.New("-name is required: every worker of the cluster needs its own"))
	}
	if w.latency < 0 {
		errs = append(errs, fmt.Errorf("-latency %s: must not be negative", w.latency))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"-round", w.round}, {"-claim-ttl", w.claimTTL}, {"-lease-ttl", w.leaseTTL}, {"-retry-period", w.retryPeriod}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", d.flag, d.v))
		}
	}
	if w.concurrency < 1 {
		errs = append(errs, fmt.Errorf("-concurrency %d: must be at least 1", w.concurrency))
	}
	if w.batch < 1 {
		errs = append(errs, fmt.Errorf("-batch %d: must be at least 1", w.batch))
	}
	return errors.Join(errs...)
}

// lines prints whole lines, prefixed with the worker's name, from the
// worker's goroutines.
type lines struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (l *lines) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s %s\n", l.prefix, fmt.Sprintf(format, a...))
}

// resource is the accounts table as one worker reaches it: a slow resource
// (every add takes latency) that records who called it. Each add is logged
// in cluster_calls before it is sent, and the account row records the
// worker that made it, so that the work of every process is visible.
type resource struct {
	*sqltable.Connector
	db      *sql.DB
	worker  string
	latency time.Duration
	out     *lines
}

// Add creates the account after logging the call and waiting latency.
func (r *resource) Add(ctx context.Context, class connector.ObjectClass, attrs connector.Attributes) (connector.Result, error) {
	name := attrs.Get("name")
	if _, err := r.db.ExecContext(ctx, `INSERT INTO cluster_calls (name, worker) VALUES ($1, $2)`, name, r.worker); err != nil {
		return connector.Result{}, connector.NewError(connector.CategoryNotSent, "add", fmt.Errorf("logging the call: %w", err))
	}
	t := time.NewTimer(r.latency)
	select {
	case <-ctx.Done():
		t.Stop()
		return connector.Result{}, connector.NewError(connector.CategoryNotSent, "add", ctx.Err())
	case <-t.C:
	}
	attrs = attrs.Clone()
	attrs["createdBy"] = []string{r.worker}
	res, err := r.Connector.Add(ctx, class, attrs)
	if err == nil {
		r.out.printf("created %s on the resource", name)
	}
	return res, err
}

// work runs a worker until ctx ends: the refresh loop and the live-sync
// loop, side by side.
func work(ctx context.Context, c common, w workerConfig, stdout io.Writer) error {
	e, err := open(ctx, c, true)
	if err != nil {
		return err
	}
	defer e.Close()
	out := &lines{w: stdout, prefix: "[" + w.name + "]"}
	res := &resource{Connector: e.accounts, db: e.db, worker: w.name, latency: w.latency, out: out}
	settings := consistency.DefaultSettings()
	settings.OperationRetryPeriod = w.retryPeriod
	engine, err := consistency.New(consistency.Config{Store: e.store,
		Resources: []consistency.Resource{{ID: accountsID, Connector: res, Settings: &settings}},
		Observer: &consistency.Observer{
			OperationFailed: func(ev consistency.OperationEvent) {
				out.printf("FAILED: shadow %s operation %d: %v", ev.ShadowID, ev.OperationID, ev.Err)
			},
			OperationPostponed: func(ev consistency.OperationEvent) {
				if ev.Err != nil && ctx.Err() == nil {
					out.printf("postponed: shadow %s operation %d: %v", ev.ShadowID, ev.OperationID, ev.Err)
				}
			},
		}})
	if err != nil {
		return err
	}
	rt, err := refresh.New(refresh.Config{Engine: engine, Owner: w.name, ClaimTTL: w.claimTTL,
		Concurrency: w.concurrency, PageSize: w.batch, Selection: refresh.Selection{ResourceIDs: []string{accountsID}}})
	if err != nil {
		return err
	}
	st, err := livesync.New(livesync.Config{ResourceID: feedID, Class: employee, Connector: e.feed, Store: e.store, Tokens: e.store,
		// The feed is new: read it from its beginning, not from now.
		StartFromBeginning: true,
		// Fences the token writes: a runner whose lease was taken over
		// cannot move the token.
		Lease: &livesync.LeaseConfig{Owner: w.name, TTL: w.leaseTTL},
		Handler: func(_ context.Context, ev livesync.Event) error {
			out.printf("live sync: %s %s (token %s)", ev.Change.Type, ev.Change.ID.Name, ev.Change.Token)
			return nil
		}})
	if err != nil {
		return err
	}
	out.printf("started: claims %d shadows at a time (claim TTL %s), live-sync lease TTL %s", w.batch, w.claimTTL, w.leaseTTL)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); refreshLoop(ctx, w, rt, out) }()
	go func() { defer wg.Done(); syncLoop(ctx, w, e.store, st, out) }()
	wg.Wait()
	out.printf("stopped")
	return nil
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// refreshLoop retries the due operations this worker can claim, round
// after round.
func refreshLoop(ctx context.Context, w workerConfig, rt *refresh.Task, out *lines) {
	for ctx.Err() == nil {
		res, err := rt.Run(ctx)
		if err != nil && ctx.Err() == nil {
			out.printf("refresh: %v", err)
		}
		if t := res.Total; t.Examined > 0 {
			out.printf("refresh round: %d shadows claimed and refreshed, %d operations completed, %d still pending, %d errors",
				t.Examined, t.Completed, t.StillPending, res.ErrorCount)
		}
		pause(ctx, w.round)
	}
}

// syncLoop runs live sync while this worker holds the leader lease, and
// stands by while another does. The lease is renewed every round; a leader
// that dies stops renewing it, and after its TTL another worker takes over.
func syncLoop(ctx context.Context, w workerConfig, leaser shadow.Leaser, st *livesync.Task, out *lines) {
	var lease shadow.Lease
	leader, standby := false, false
	for ctx.Err() == nil {
		l, err := leaser.AcquireLease(ctx, leaderLease, w.name, w.leaseTTL)
		switch {
		case errors.Is(err, shadow.ErrLeaseHeld):
			if !standby {
				out.printf("live sync: standing by (another worker holds the lease)")
			}
			leader, standby = false, true
		case err != nil:
			if ctx.Err() == nil {
				out.printf("live sync: lease: %v", err)
			}
			leader, standby = false, false
		default:
			if !leader || l.Term != lease.Term {
				if l.Term > 1 {
					out.printf("live sync: took over the lease (term %d), resuming from the stored token", l.Term)
				} else {
					out.printf("live sync: leading (lease term %d)", l.Term)
				}
			}
			lease, leader, standby = l, true, false
			r, err := st.Run(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				out.printf("live sync: run stopped: %v", err)
			case r.Processed > 0:
				out.printf("live sync: %d changes applied, token %s → %s", r.Processed, r.TokenBefore, r.TokenAfter)
			}
		}
		pause(ctx, w.round)
	}
	if leader {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := leaser.ReleaseLease(rctx, lease); err == nil {
			out.printf("live sync: lease released")
		}
	}
}
