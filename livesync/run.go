package livesync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// outcome is what became of one change.
type outcome uint8

const (
	outProcessed outcome = iota + 1
	outIgnored
	outSetAside
	outFailed    // skipped under ActionStopAfter, or given up
	outStop      // stops the run; the change is not done
	outSkipped   // parallel: not attempted because the run stopped
	outCancelled // ctx is done: stops the run, not counted as a failure
)

// run is the state of one Run.
type run struct {
	t   *Task
	cfg *Config
	res Result

	// cur is the stored token. pendingTok is the token of the done but
	// uncommitted work (valid when hasPending); sinceCommit counts the
	// changes done since the last commit.
	cur         connector.Token
	pendingTok  connector.Token
	hasPending  bool
	sinceCommit int

	dry       bool
	moveToken bool
	grouping  bool
	grp       group
	// pre holds the shadows the current group's changes may correlate
	// to, when the store is a shadow.IdentifierFinder.
	pre prefetch

	lease   *shadow.Lease
	renewAt time.Time

	// polMu guards hits: errors matched per rule (ActionStopAfter).
	polMu sync.Mutex
	hits  []int

	// blocked counts, per object key, the set-aside changes that later
	// changes of the object must wait behind. nBlocked > 0 when any.
	blkMu    sync.Mutex
	blocked  map[string]int
	nBlocked atomic.Int32

	// known holds the IDs of the set-aside changes loaded at the start of
	// the run (read-only afterwards).
	known map[string]struct{}

	deletes  int
	guardOff bool
}

func (t *Task) newRun() *run {
	cfg := &t.cfg
	r := &run{t: t, cfg: cfg, dry: cfg.DryRun, moveToken: !cfg.DryRun || cfg.UpdateTokenInDryRun}
	r.res.Dry = cfg.DryRun
	r.res.ByType = make(map[connector.ChangeType]int, 4)
	r.res.Started = cfg.Clock.Now()
	return r
}

func (r *run) run(ctx context.Context) (err error) {
	if r.cfg.Lease != nil {
		if err := r.acquireLease(ctx); err != nil {
			return err
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if rerr := r.cfg.Lease.Leaser.ReleaseLease(rctx, *r.lease); rerr != nil {
				r.cfg.Logger.WarnContext(ctx, "livesync: release lease", "task", r.t.key.String(), "error", rerr)
			}
		}()
	}
	tok, found, err := r.cfg.Tokens.LoadToken(ctx, r.t.key)
	if err != nil {
		return fmt.Errorf("livesync: load token of %s: %w", r.t.key, err)
	}
	r.cur, r.res.TokenBefore = tok, tok
	if !found {
		r.res.FirstRun = true
		if !r.cfg.StartFromBeginning {
			latest, err := r.t.ls.LatestToken(ctx, r.cfg.Class)
			if err != nil {
				return fmt.Errorf("livesync: latest token of %s: %w", r.t.key, connector.Wrap("latest token", err))
			}
			if !r.moveToken {
				return nil
			}
			// Stored even when it is the empty token: the next run
			// is no first run.
			if err := r.cas(ctx, latest); err != nil {
				return fmt.Errorf("livesync: store first token of %s: %w", r.t.key, err)
			}
			r.done(latest)
			return nil
		}
	}
	r.guardOff = r.t.override.Swap(false)
	defer func() {
		r.t.guardMu.Lock()
		r.t.tripped = r.res.DeleteGuardTripped
		r.t.guardMu.Unlock()
	}()
	if err := r.retrySetAside(ctx); err != nil {
		return errors.Join(err, r.commitAfterStop(ctx))
	}
	r.grouping = r.t.grouped
	if err := r.stream(ctx); err != nil {
		return errors.Join(err, r.commitAfterStop(ctx))
	}
	return r.commit(ctx)
}

// commitAfterStop commits the work done before the run stopped, even when it
// stopped because ctx was cancelled: progress is kept.
func (r *run) commitAfterStop(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return r.commit(cctx)
}

// stream fetches and processes the changes after the token.
func (r *run) stream(ctx context.Context) error {
	pos := r.cur
	budget := r.cfg.BatchSize
	for {
		max := r.cfg.FetchSize
		if budget > 0 {
			left := budget - r.res.Fetched
			if left <= 0 {
				return nil
			}
			if max == 0 || max > left {
				max = left
			}
		}
		if r.lease != nil {
			if err := r.keepLease(ctx); err != nil {
				return err
			}
		}
		batch, err := r.t.ls.FetchChanges(ctx, r.cfg.Class, pos, max)
		if err != nil {
			return fmt.Errorf("livesync: fetch changes of %s after %q: %w", r.t.key, pos, connector.Wrap("fetch changes", err))
		}
		changes, end := batch.Changes, batch.Token
		if max > 0 && len(changes) > max && r.t.precise && changes[max-1].Token != "" {
			// The connector returned more than asked: keep max and
			// resume after the last one kept. (With imprecise tokens
			// BatchSize is refused and a FetchSize overrun is
			// processed whole.)
			changes, end = changes[:max], changes[max-1].Token
			batch.More = true
		}
		if end == "" && len(changes) > 0 {
			// No batch token: with precise tokens the last change's
			// is the place to resume; without, there is none.
			if end = changes[len(changes)-1].Token; end == "" || !r.t.precise {
				return fmt.Errorf("livesync: fetch changes of %s after %q: %w", r.t.key, pos,
					connector.NewError(connector.CategorySchema, "fetch changes", fmt.Errorf("%w: a batch of %d changes has no token", ErrMalformedChange, len(changes))))
			}
		} else if end == "" {
			end = pos
		}
		r.res.Fetched += len(changes)
		if err := r.guard(ctx, changes); err != nil {
			return err
		}
		if r.cfg.Workers > 1 {
			err = r.parallel(ctx, changes, pos, end)
		} else {
			err = r.sequential(ctx, changes, pos, end)
		}
		if err != nil {
			return err
		}
		pos = end
		if !batch.More || len(changes) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// guard applies the delete guard to a fetch before it is processed.
func (r *run) guard(ctx context.Context, changes []connector.Change) error {
	max := r.cfg.DeleteGuard.MaxDeletes
	if max == 0 {
		return nil
	}
	n := 0
	for i := range changes {
		if changes[i].Type == connector.ChangeDelete {
			n++
		}
	}
	if r.deletes+n > max && !r.guardOff {
		r.res.DeleteGuardTripped = true
		r.cfg.Logger.WarnContext(ctx, "livesync: delete guard stopped the run", "task", r.t.key.String(),
			"deletes", r.deletes+n, "max", max)
		if f := r.cfg.Observer.DeleteGuardTripped; f != nil {
			f(r.t.key, r.deletes+n, max)
		}
		return fmt.Errorf("%w: %d deletes in the run of %s, at most %d allowed", ErrDeleteGuard, r.deletes+n, r.t.key, max)
	}
	r.deletes += n
	return nil
}

// sequential processes one fetch in order on the calling goroutine.
func (r *run) sequential(ctx context.Context, changes []connector.Change, from, end connector.Token) error {
	done := ctx.Done()
	r.pre.reset()
	for i := range changes {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		if r.lease != nil {
			if err := r.keepLease(ctx); err != nil {
				return err
			}
		}
		if r.grouping && r.t.finder != nil && i >= r.pre.until {
			r.prefetch(ctx, changes, i)
		}
		ch := &changes[i]
		out, typ, err := r.handle(ctx, ch, nil, from, i)
		switch out {
		case outStop:
			r.res.Failed++
			return err
		case outCancelled:
			return err
		}
		r.count(out, typ)
		if r.t.precise && ch.Token != "" {
			r.pendingTok, r.hasPending = ch.Token, true
		}
		r.sinceCommit++
		if r.sinceCommit >= r.cfg.GroupCommit {
			if err := r.commit(ctx); err != nil {
				return err
			}
		}
	}
	return r.fetchDone(ctx, end)
}

// prefetch looks up, in one query, the shadows that the changes from
// changes[i] to the end of the group may correlate to. On failure those
// changes are correlated one by one, as without an IdentifierFinder.
func (r *run) prefetch(ctx context.Context, changes []connector.Change, i int) {
	end := min(len(changes), i+max(r.cfg.GroupCommit-r.sinceCommit, 1))
	if err := r.pre.load(ctx, r.t.finder, r.cfg.ResourceID, r.cfg.Class, changes[i:end]); err != nil {
		r.cfg.Logger.WarnContext(ctx, "livesync: looking up the shadows of a group failed; correlating its changes one by one",
			"task", r.t.key.String(), "changes", end-i, "error", err)
	}
	r.pre.until = end
}

// fetchDone records that every change of a fetch is done: the fetch's end
// token may be stored. With imprecise tokens that is the only safe point,
// so it is committed at once.
func (r *run) fetchDone(ctx context.Context, end connector.Token) error {
	if end != "" {
		r.pendingTok, r.hasPending = end, true
	}
	if !r.t.precise || r.sinceCommit >= r.cfg.GroupCommit {
		return r.commit(ctx)
	}
	return nil
}

func (r *run) count(out outcome, typ connector.ChangeType) {
	switch out {
	case outProcessed:
		r.res.Processed++
		r.res.ByType[typ]++
	case outIgnored:
		r.res.Ignored++
	case outSetAside:
		r.res.SetAside++
	case outFailed:
		r.res.Failed++
	}
}

// commit stores the group's shadow writes and moves the token to the done
// position, atomically when the store can. On failure what was not stored
// stays pending, so that commitAfterStop may try again.
func (r *run) commit(ctx context.Context) error {
	next := r.cur
	if r.hasPending && r.moveToken {
		next = r.pendingTok
	}
	if writes := r.grp.writes; len(writes) > 0 {
		var err error
		if r.t.gc != nil {
			err = r.t.gc.CommitGroup(ctx, writes, r.t.key, r.cur, next, r.lease)
			if err == nil || r.landed(ctx, err, next) {
				r.grp.reset()
				r.done(next)
				return nil
			}
		} else {
			err = r.t.batcher.Apply(ctx, writes)
		}
		switch {
		case err == nil:
			r.grp.reset()
		case concurrent(err):
			// Another writer changed a shadow of the group: store the
			// group's changes one by one over what is there now.
			r.cfg.Logger.InfoContext(ctx, "livesync: group commit met a concurrent write; storing its changes one by one",
				"task", r.t.key.String(), "changes", len(r.grp.applied), "error", err)
			if err := r.replayGroup(ctx); err != nil {
				return fmt.Errorf("livesync: store the changes of a group of %s: %w", r.t.key, err)
			}
		default:
			return fmt.Errorf("livesync: commit %d shadow writes and the token of %s: %w", len(writes), r.t.key, err)
		}
	}
	if next != r.cur {
		if err := r.cas(ctx, next); err != nil && !r.landed(ctx, err, next) {
			return fmt.Errorf("livesync: store token of %s: %w", r.t.key, err)
		}
	}
	r.done(next)
	return nil
}

// landed reports whether a commit that failed with err did land after all:
// the token conflicts because the stored token already is next. That is
// this run's own earlier commit, whose answer was lost (the connection
// dropped after the COMMIT reached the server); its writes are stored.
func (r *run) landed(ctx context.Context, err error, next connector.Token) bool {
	if next == r.cur || !errors.Is(err, ErrTokenConflict) {
		return false
	}
	tok, found, lerr := r.cfg.Tokens.LoadToken(ctx, r.t.key)
	if lerr != nil || !found || tok != next {
		return false
	}
	r.cfg.Logger.InfoContext(ctx, "livesync: an earlier commit whose answer was lost had landed", "task", r.t.key.String(), "token", string(next))
	return true
}

// done records a successful commit.
func (r *run) done(next connector.Token) {
	r.hasPending = false
	r.sinceCommit = 0
	r.pre.reset()
	prev := r.cur
	r.cur = next
	if f := r.cfg.Observer.TokenMoved; f != nil && prev != next {
		f(r.t.key, prev, next)
	}
}

func (r *run) cas(ctx context.Context, next connector.Token) error {
	if r.lease != nil {
		return r.t.fenced.CompareAndSwapTokenFenced(ctx, r.t.key, r.cur, next, *r.lease)
	}
	return r.cfg.Tokens.CompareAndSwapToken(ctx, r.t.key, r.cur, next)
}

func (r *run) acquireLease(ctx context.Context) error {
	lc := r.cfg.Lease
	l, err := lc.Leaser.AcquireLease(ctx, r.t.key.String(), lc.Owner, lc.TTL)
	if err != nil {
		return fmt.Errorf("livesync: lease of %s for %q: %w", r.t.key, lc.Owner, err)
	}
	r.lease = &l
	r.renewAt = r.cfg.Clock.Now().Add(lc.TTL / 2)
	return nil
}

// keepLease renews the lease once half its TTL has passed.
func (r *run) keepLease(ctx context.Context) error {
	now := r.cfg.Clock.Now()
	if now.Before(r.renewAt) {
		return nil
	}
	l, err := r.cfg.Lease.Leaser.RenewLease(ctx, *r.lease, r.cfg.Lease.TTL)
	if err != nil {
		return fmt.Errorf("livesync: renew lease of %s: %w", r.t.key, err)
	}
	*r.lease = l
	r.renewAt = now.Add(r.cfg.Lease.TTL / 2)
	return nil
}

// retrySetAside offers the set-aside changes again, oldest first. A change
// whose object has an earlier change still set aside waits behind it.
func (r *run) retrySetAside(ctx context.Context) error {
	list, err := r.cfg.Tokens.SetAsideChanges(ctx, r.t.key)
	if err != nil {
		return fmt.Errorf("livesync: set-aside changes of %s: %w", r.t.key, err)
	}
	if len(list) == 0 {
		return nil
	}
	changes := make([]connector.Change, len(list))
	r.known = make(map[string]struct{}, len(list))
	for i := range list {
		changes[i] = list[i].Change
		r.known[list[i].ID] = struct{}{}
	}
	if err := r.guard(ctx, changes); err != nil {
		return err
	}
	for i := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.lease != nil {
			if err := r.keepLease(ctx); err != nil {
				return err
			}
		}
		e := &list[i]
		if r.isBlocked(&e.Change) {
			r.res.SetAside++
			continue
		}
		r.res.Retried++
		out, typ, err := r.handle(ctx, &e.Change, e, "", 0)
		switch out {
		case outStop:
			r.res.Failed++
			return err
		case outCancelled:
			return err
		}
		r.count(out, typ)
	}
	return nil
}

func objectKey(ch *connector.Change) string {
	if ch.ID.UID != "" {
		return ch.ID.UID
	}
	return "\x00" + ch.ID.Name
}

func (r *run) isBlocked(ch *connector.Change) bool {
	if r.nBlocked.Load() == 0 {
		return false
	}
	k := objectKey(ch)
	r.blkMu.Lock()
	defer r.blkMu.Unlock()
	return r.blocked[k] > 0
}

func (r *run) block(ch *connector.Change) {
	k := objectKey(ch)
	r.blkMu.Lock()
	defer r.blkMu.Unlock()
	if r.blocked == nil {
		r.blocked = make(map[string]int)
	}
	r.blocked[k]++
	r.nBlocked.Add(1)
}

func (r *run) asideID(ch *connector.Change, from connector.Token, idx int) string {
	if r.t.precise {
		return objectKey(ch) + "@" + string(ch.Token)
	}
	return fmt.Sprintf("%s@%s#%d", objectKey(ch), from, idx)
}

// handle processes one change (entry != nil: a set-aside change offered
// again) and applies the error policy to a failure.
func (r *run) handle(ctx context.Context, ch *connector.Change, entry *SetAsideChange, from connector.Token, idx int) (outcome, connector.ChangeType, error) {
	attempt := 0
	if entry != nil {
		attempt = entry.Attempts + 1
	} else if r.isBlocked(ch) {
		sa := SetAsideChange{
			ID:         r.asideID(ch, from, idx),
			Change:     *ch,
			LastError:  "waiting behind an earlier set-aside change of the same object",
			SetAsideAt: r.cfg.Clock.Now(),
		}
		// A change fetched again (imprecise tokens, or workers that
		// stopped) may be in the side list already: keep that entry
		// and its attempts.
		if _, again := r.known[sa.ID]; !again && !r.dry {
			if err := r.cfg.Tokens.SetAside(ctx, r.t.key, sa); err != nil {
				return outStop, ch.Type, fmt.Errorf("livesync: set aside change %q of %s: %w", sa.ID, r.t.key, err)
			}
		}
		r.block(ch)
		return outSetAside, ch.Type, nil
	}
	typ, err := r.apply(ctx, ch, entry != nil, attempt)
	if err == nil {
		if entry != nil && !r.dry {
			if err := r.cfg.Tokens.RemoveSetAside(ctx, r.t.key, entry.ID); err != nil {
				return outStop, typ, fmt.Errorf("livesync: remove set-aside change %q of %s: %w", entry.ID, r.t.key, err)
			}
		}
		return outProcessed, typ, nil
	}
	return r.decide(ctx, ch, entry, err, from, idx)
}

// decide applies the error policy to a failed change.
func (r *run) decide(ctx context.Context, ch *connector.Change, entry *SetAsideChange, cause error, from connector.Token, idx int) (outcome, connector.ChangeType, error) {
	if err := ctx.Err(); err != nil {
		// The run is being cancelled: the change did not fail, it was
		// cut short.
		return outCancelled, ch.Type, err
	}
	cat := connector.Classify(cause)
	rule := -1
	for i := range r.cfg.ErrorPolicy.Rules {
		if r.cfg.ErrorPolicy.Rules[i].matches(cat, ch.Type) {
			rule = i
			break
		}
	}
	action := ActionStop
	if rule >= 0 {
		action = r.cfg.ErrorPolicy.Rules[rule].Action
	}
	if action == ActionStopAfter {
		r.polMu.Lock()
		if r.hits == nil {
			r.hits = make([]int, len(r.cfg.ErrorPolicy.Rules))
		}
		r.hits[rule]++
		n := r.hits[rule]
		r.polMu.Unlock()
		if n >= r.cfg.ErrorPolicy.Rules[rule].StopAfter {
			action = ActionStop
		}
	}
	if f := r.cfg.Observer.ChangeFailed; f != nil {
		f(r.t.key, *ch, cause, action)
	}
	stopErr := func() error {
		return fmt.Errorf("livesync: %s change of %q (uid %q, token %q) in %s: %w",
			ch.Type, ch.ID.Name, ch.ID.UID, ch.Token, r.t.key, cause)
	}
	switch action {
	case ActionIgnore, ActionStopAfter:
		r.cfg.Logger.WarnContext(ctx, "livesync: change failed", "task", r.t.key.String(), "type", ch.Type.String(),
			"uid", ch.ID.UID, "name", ch.ID.Name, "action", action.String(), "error", cause)
		if entry != nil && !r.dry {
			if err := r.cfg.Tokens.RemoveSetAside(ctx, r.t.key, entry.ID); err != nil {
				return outStop, ch.Type, errors.Join(stopErr(), err)
			}
		}
		if action == ActionIgnore {
			return outIgnored, ch.Type, nil
		}
		return outFailed, ch.Type, nil
	case ActionSetAside:
		sa := SetAsideChange{
			Change:            *ch,
			Attempts:          1,
			LastError:         cause.Error(),
			LastErrorCategory: cat,
			SetAsideAt:        r.cfg.Clock.Now(),
		}
		if entry != nil {
			sa.ID, sa.Attempts, sa.SetAsideAt = entry.ID, entry.Attempts+1, entry.SetAsideAt
		} else {
			sa.ID = r.asideID(ch, from, idx)
		}
		if max := r.cfg.ErrorPolicy.Rules[rule].MaxAttempts; max > 0 && sa.Attempts >= max {
			r.cfg.Logger.WarnContext(ctx, "livesync: change given up", "task", r.t.key.String(), "type", ch.Type.String(),
				"uid", ch.ID.UID, "name", ch.ID.Name, "attempts", sa.Attempts, "error", cause)
			if entry != nil && !r.dry {
				if err := r.cfg.Tokens.RemoveSetAside(ctx, r.t.key, entry.ID); err != nil {
					return outStop, ch.Type, errors.Join(stopErr(), err)
				}
			}
			if f := r.cfg.Observer.SetAsideGivenUp; f != nil {
				f(r.t.key, sa)
			}
			return outFailed, ch.Type, nil
		}
		if !r.dry {
			if err := r.cfg.Tokens.SetAside(ctx, r.t.key, sa); err != nil {
				return outStop, ch.Type, errors.Join(stopErr(), err)
			}
		}
		r.block(ch)
		return outSetAside, ch.Type, nil
	}
	if entry != nil && !r.dry {
		// A set-aside change that stops the run stays set aside, with
		// this attempt counted.
		sa := *entry
		sa.Attempts++
		sa.LastError, sa.LastErrorCategory = cause.Error(), cat
		if err := r.cfg.Tokens.SetAside(ctx, r.t.key, sa); err != nil {
			return outStop, ch.Type, errors.Join(stopErr(), err)
		}
	}
	return outStop, ch.Type, stopErr()
}

// malformed returns a schema-category error for a change the engine cannot
// process, or nil.
func (r *run) malformed(ch *connector.Change, retry bool) error {
	err := ch.Validate()
	switch {
	case err != nil:
	case ch.Class != r.cfg.Class:
		err = fmt.Errorf("change of class %q in the stream of class %q", ch.Class, r.cfg.Class)
	case r.t.precise && !retry && ch.Token == "":
		err = fmt.Errorf("%s change of %q has no token but the connector's tokens are precise", ch.Type, ch.ID.Name)
	default:
		return nil
	}
	return &connector.Error{Category: connector.CategorySchema, Op: "livesync", Err: fmt.Errorf("%w: %w", ErrMalformedChange, err)}
}

// apply correlates ch to a shadow, stores the new shadow and calls the
// handler. It returns the type as applied.
func (r *run) apply(ctx context.Context, ch *connector.Change, retry bool, attempt int) (connector.ChangeType, error) {
	if err := r.malformed(ch, retry); err != nil {
		return ch.Type, err
	}
	typ, obj, id := ch.Type, ch.Object, ch.ID
	if typ != connector.ChangeDelete && obj == nil {
		o, err := r.cfg.Connector.Get(ctx, r.cfg.Class, id)
		switch {
		case err == nil:
			obj = o.Attributes
			if obj == nil {
				obj = connector.Attributes{}
			}
			if o.ID.UID != "" {
				id.UID = o.ID.UID
			}
			if o.ID.Name != "" {
				id.Name = o.ID.Name
			}
		case connector.Classify(err) == connector.CategoryNotFound:
			typ = connector.ChangeDelete
		default:
			return typ, connector.Wrap("get", err)
		}
	}
	before, after, err := r.write(ctx, typ, id, ch.OldName, obj)
	if err != nil {
		return typ, err
	}
	h := r.cfg.Handler
	if h == nil {
		return typ, nil
	}
	ev := Event{Change: *ch, Before: before, After: after, Dry: r.dry, Attempt: attempt}
	ev.Change.Type, ev.Change.ID, ev.Change.Object = typ, id, obj
	if r.grouping && after != nil {
		// after is held by the pending group write: hand out a copy.
		ev.After = after.Clone()
		ev.Change.Object = ev.After.Attributes
		if typ == connector.ChangeDelete {
			ev.Change.Object = nil
		}
	}
	return typ, callHandler(ctx, h, ev)
}

// write correlates the object id to its shadow, computes the shadow after
// the change and stores it — or, in a group commit, records it in the group.
// A version conflict or a taken identity (a concurrent writer) makes it read
// again, up to three times.
func (r *run) write(ctx context.Context, typ connector.ChangeType, id connector.Identifiers, oldName string, obj connector.Attributes) (before, after *shadow.Shadow, err error) {
	for try := 0; ; try++ {
		var gi int
		before, gi, err = r.correlate(ctx, id, oldName)
		if err != nil {
			return nil, nil, fmt.Errorf("livesync: correlate %q (uid %q): %w", id.Name, id.UID, err)
		}
		var op shadow.WriteOp
		after, op = r.next(before, typ, id, obj)
		if op == 0 || r.dry {
			return before, after, nil
		}
		if r.grouping {
			r.grp.put(gi, op, after, before)
			r.grp.applied = append(r.grp.applied, applied{typ: typ, id: id, oldName: oldName, obj: obj})
			return before, after, nil
		}
		if op == shadow.WriteCreate {
			err = r.cfg.Store.Create(ctx, after)
		} else {
			err = r.cfg.Store.Update(ctx, after)
		}
		if err == nil {
			return before, after, nil
		}
		if try < 3 && concurrent(err) {
			continue
		}
		return nil, nil, fmt.Errorf("livesync: store shadow of %q (uid %q): %w", id.Name, id.UID, err)
	}
}

// concurrent reports a store error that another writer caused.
func concurrent(err error) bool {
	return errors.Is(err, shadow.ErrConflict) || errors.Is(err, shadow.ErrDuplicate)
}

// replayGroup stores the group's changes one by one, reading each shadow
// again: after a group commit failed because another writer changed one of
// its shadows. The handler is not called again.
func (r *run) replayGroup(ctx context.Context) error {
	changes := slices.Clone(r.grp.applied)
	r.grp.reset()
	r.grouping = false
	defer func() { r.grouping = true }()
	for _, c := range changes {
		if _, _, err := r.write(ctx, c.typ, c.id, c.oldName, c.obj); err != nil {
			return err
		}
	}
	return nil
}

func callHandler(ctx context.Context, h Handler, ev Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, p)
		}
	}()
	return h(ctx, ev)
}

// correlate finds the shadow of the object id: by UID, then by Name (and
// the old name of a rename), skipping shadows of another UID. gi is the
// index of the group's pending write of the shadow, or -1. The shadow is
// the caller's. In a group the group's pending writes come first, then the
// shadows prefetched for the group, then the store.
func (r *run) correlate(ctx context.Context, id connector.Identifiers, oldName string) (*shadow.Shadow, int, error) {
	if r.grouping {
		if gi := r.grp.lookup(id, oldName); gi >= 0 {
			return r.grp.writes[gi].Shadow.Clone(), gi, nil
		}
		if sh, ok := r.pre.correlate(id, oldName); ok {
			return sh, -1, nil
		}
	}
	st := r.cfg.Store
	if id.UID != "" {
		sh, err := shadow.FindLive(ctx, st, r.cfg.ResourceID, r.cfg.Class, connector.Identifiers{UID: id.UID})
		if err != nil || sh != nil {
			return sh, -1, err
		}
	}
	for _, name := range [2]string{id.Name, oldName} {
		if name == "" {
			continue
		}
		list, err := st.List(ctx, shadow.Query{ResourceID: r.cfg.ResourceID, Class: r.cfg.Class, Name: name, Dead: shadow.DeadExclude, Limit: nameLimit})
		if err != nil {
			return nil, -1, err
		}
		if sh := byName(list, id.UID); sh != nil {
			return sh, -1, nil
		}
	}
	return nil, -1, nil
}

// addUnsent reports whether sh's object certainly does not exist yet: its
// add is unfinished and was never sent, or failed before it was sent.
func addUnsent(sh *shadow.Shadow) bool {
	if sh.Exists {
		return false
	}
	for i := range sh.Pending {
		op := &sh.Pending[i]
		if op.Completed() || op.Delta.Type != connector.DeltaAdd {
			continue
		}
		switch {
		case op.Status == shadow.StatusExecuting, op.AsyncRef != "":
			return false
		case op.Attempt == 0:
			return true
		}
		return op.LastErrorCategory == connector.CategoryNotSent || op.LastErrorCategory == connector.CategoryThrottled
	}
	return false
}

// next computes the shadow after the change and the write that stores it
// (0: nothing to write).
func (r *run) next(before *shadow.Shadow, typ connector.ChangeType, id connector.Identifiers, obj connector.Attributes) (*shadow.Shadow, shadow.WriteOp) {
	switch {
	case typ == connector.ChangeDelete:
		if before == nil {
			return nil, 0
		}
		after := copyShadow(before)
		after.Attributes = before.Attributes.Clone()
		after.Dead, after.DeadSince, after.Exists = true, r.cfg.Clock.Now(), false
		if after.UID == "" {
			after.UID = id.UID
		}
		return after, shadow.WriteUpdate
	case before == nil:
		return &shadow.Shadow{
			ResourceID: r.cfg.ResourceID,
			Class:      r.cfg.Class,
			Kind:       r.cfg.Kind,
			Intent:     r.cfg.Intent,
			UID:        id.UID,
			Name:       id.Name,
			Attributes: obj,
			Exists:     true,
			Origin:     shadow.OriginDiscovered,
		}, shadow.WriteCreate
	}
	after := copyShadow(before)
	after.Attributes = obj
	if id.UID != "" {
		after.UID = id.UID
	}
	if id.Name != "" {
		after.Name = id.Name
	}
	after.Exists = true
	return after, shadow.WriteUpdate
}

// copyShadow copies s, sharing its Attributes (the caller replaces them).
func copyShadow(s *shadow.Shadow) *shadow.Shadow {
	c := *s
	if len(s.Pending) > 0 {
		c.Pending = make([]shadow.PendingOperation, len(s.Pending))
		for i, op := range s.Pending {
			c.Pending[i] = op.Clone()
		}
	}
	return &c
}

// group holds the shadow writes of a group commit not yet stored, one per
// object, indexed by UID and Name so later changes of the group see them.
type group struct {
	writes []shadow.Write
	byUID  map[string]int
	byName map[string]int
	// applied are the group's changes as applied, for replayGroup.
	applied []applied
}

// applied is one change of a group as applied.
type applied struct {
	typ     connector.ChangeType
	id      connector.Identifiers
	oldName string
	obj     connector.Attributes
}

func (g *group) reset() {
	clear(g.writes)
	g.writes = g.writes[:0]
	clear(g.applied)
	g.applied = g.applied[:0]
	clear(g.byUID)
	clear(g.byName)
}

func (g *group) lookup(id connector.Identifiers, oldName string) int {
	if len(g.writes) == 0 {
		return -1
	}
	if id.UID != "" {
		if i, ok := g.byUID[id.UID]; ok {
			return i
		}
	}
	for _, n := range [2]string{id.Name, oldName} {
		if n == "" {
			continue
		}
		if i, ok := g.byName[n]; ok {
			if u := g.writes[i].Shadow.UID; id.UID == "" || u == "" || u == id.UID {
				return i
			}
		}
	}
	return -1
}

// put records the write of after: replacing the pending write gi (keeping
// its op: a create stays a create), or appending a new one.
func (g *group) put(gi int, op shadow.WriteOp, after, before *shadow.Shadow) {
	if g.byUID == nil {
		g.byUID, g.byName = make(map[string]int), make(map[string]int)
	}
	if gi >= 0 {
		g.writes[gi].Shadow = after
		if before != nil && before.Name != after.Name && g.byName[before.Name] == gi {
			delete(g.byName, before.Name)
		}
	} else {
		gi = len(g.writes)
		g.writes = append(g.writes, shadow.Write{Op: op, Shadow: after})
	}
	if after.UID != "" {
		g.byUID[after.UID] = gi
	}
	if after.Name != "" {
		g.byName[after.Name] = gi
	}
}
