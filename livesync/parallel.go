package livesync

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/umbra-idm/umbra/connector"
)

// presult is a worker's report on one change.
type presult struct {
	idx int
	out outcome
	typ connector.ChangeType
	err error
}

// parallel processes one fetch on Config.Workers goroutines. Changes of one
// object go to the same worker, in stream order. The calling goroutine
// collects the outcomes and moves the token to the highest position below
// which every change is done; after a stop it lets the changes under way
// finish, dispatches no more, and leaves the token before the first change
// not done.
func (r *run) parallel(ctx context.Context, changes []connector.Change, from, end connector.Token) error {
	n := len(changes)
	if n == 0 {
		return r.fetchDone(ctx, end)
	}
	w := r.cfg.Workers
	var stop atomic.Bool
	results := make(chan presult, 4*w)
	queues := make([]chan int, w)
	var wg sync.WaitGroup
	for q := range queues {
		queues[q] = make(chan int, 16)
		wg.Add(1)
		go func(queue <-chan int) {
			defer wg.Done()
			for idx := range queue {
				if stop.Load() {
					results <- presult{idx: idx, out: outSkipped}
					continue
				}
				out, typ, err := r.handle(ctx, &changes[idx], nil, from, idx)
				results <- presult{idx: idx, out: out, typ: typ, err: err}
			}
		}(queues[q])
	}
	go func() {
		for i := range changes {
			if stop.Load() {
				break
			}
			queues[objectHash(&changes[i])%uint32(w)] <- i
		}
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
		close(results)
	}()

	done := make([]bool, n)
	mark := 0 // every change below mark is done
	stopIdx := n
	var stopErr error
	halt := func(idx int, err error) {
		stop.Store(true)
		if idx < stopIdx || stopErr == nil {
			stopIdx, stopErr = idx, err
		}
	}
	ctxDone := ctx.Done()
	for res := range results {
		switch res.out {
		case outSkipped:
			continue
		case outStop:
			r.res.Failed++
			halt(res.idx, res.err)
			continue
		case outCancelled:
			halt(res.idx, res.err)
			continue
		}
		r.count(res.out, res.typ)
		done[res.idx] = true
		for mark < n && done[mark] {
			if r.t.precise && changes[mark].Token != "" {
				r.pendingTok, r.hasPending = changes[mark].Token, true
			}
			r.sinceCommit++
			mark++
		}
		if stop.Load() {
			continue
		}
		select {
		case <-ctxDone:
			halt(n, ctx.Err())
			continue
		default:
		}
		if r.sinceCommit >= r.cfg.GroupCommit {
			if err := r.commit(ctx); err != nil {
				halt(n, err)
				continue
			}
		}
		if r.lease != nil {
			if err := r.keepLease(ctx); err != nil {
				halt(n, err)
			}
		}
	}
	if stopErr != nil {
		if !r.t.precise {
			// Imprecise tokens: nothing of a partly done fetch may be
			// committed.
			r.hasPending = false
		}
		return stopErr
	}
	return r.fetchDone(ctx, end)
}

// objectHash spreads objects over workers: by UID, or by Name when the change
// has none (FNV-1a).
func objectHash(ch *connector.Change) uint32 {
	k := ch.ID.UID
	if k == "" {
		k = ch.ID.Name
	}
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return h
}
