package consistency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// ErrMassDeletion is returned by Reconcile when a run would mark more of a
// resource's shadows vanished than its guard allows. Nothing was marked;
// rerun with AllowMassDeletion once the cause (a truncated scan, a wrong base
// DN, an emptied resource) is understood.
var ErrMassDeletion = errors.New("consistency: reconciliation stopped by the mass-deletion guard")

// ErrNoSearch is returned by Reconcile for a resource whose connector cannot
// search (connector.Searcher).
var ErrNoSearch = errors.New("consistency: the connector cannot search, so it cannot be reconciled")

// MaxVanishedShareDefault is the default share of a resource's live shadows
// that one reconciliation run may find vanished before the guard stops it.
const MaxVanishedShareDefault = 0.5

// ReconcileOptions configure one reconciliation run.
type ReconcileOptions struct {
	// AllowMassDeletion overrides the mass-deletion guard for this run.
	AllowMassDeletion bool
	// Class is the object class to reconcile. Required.
	Class connector.ObjectClass
	// DryRun reports what the run would do without changing anything: no
	// shadow is written, no object created, no handler that changes
	// things is expected to act (handlers are told through DryRun).
	DryRun bool
	// Handler receives what the host must know. Optional.
	Handler ReconcileHandler
	// MaxVanished, when > 0, stops the run when more shadows than this
	// would be found vanished.
	MaxVanished int
	// MaxVanishedShare stops the run when more than this share of the
	// live shadows would be found vanished; a scan that sees nothing at all
	// while shadows exist is always stopped. 0 means
	// MaxVanishedShareDefault; 1 turns the share off.
	MaxVanishedShare float64
	// PageSize is the page size of the resource search and of store
	// paging. Default 500.
	PageSize int
	// Progress is called after every object and shadow handled.
	Progress func(ReconcileProgress)
	// ResourceID is the resource to reconcile. Required.
	ResourceID string
}

// ReconcileHandler holds the host's callbacks; every field is optional.
// Callbacks run synchronously; an error is counted and reported, and the run
// goes on.
type ReconcileHandler struct {
	// Unmatched is called for a resource object that had no shadow; sh is
	// the shadow just created for it (origin discovered).
	Unmatched func(ctx context.Context, sh *shadow.Shadow, dryRun bool) error
	// Changed is called when the resource's attributes differ from the
	// cache; changes turn the old cache into what the resource has now.
	Changed func(ctx context.Context, sh *shadow.Shadow, changes []connector.AttributeDelta, dryRun bool) error
	// Reappeared is called for an object whose shadow is dead. It returns
	// true to resurrect the shadow (not dead again, cache from the object);
	// false only reports it.
	Reappeared func(ctx context.Context, sh *shadow.Shadow, obj connector.Object, dryRun bool) (bool, error)
	// Vanished is called for a shadow whose object is gone, after
	// discovery (recreated tells which way it went).
	Vanished func(ctx context.Context, sh *shadow.Shadow, recreated bool, dryRun bool) error
}

// ReconcileProgress tells a host how far a run got.
type ReconcileProgress struct {
	// Phase is "scan" while reading the resource, "sweep" while handling
	// the shadows the scan did not see.
	Phase string
	// Done counts objects (scan) or shadows (sweep) handled.
	Done int
}

// ReconcileResult reports a run.
type ReconcileResult struct {
	ResourceID string
	Class      connector.ObjectClass
	// Mark is the time the run marked seen shadows with.
	Mark time.Time
	// Seen counts resource objects read; Created shadows made for unknown
	// objects; Updated shadows whose cache drifted; Refreshed shadows with
	// pending operations refreshed; Vanished shadows whose object was gone,
	// of which Recreated were re-created and MarkedDead marked dead;
	// Reappeared objects found behind dead shadows, of which Resurrected
	// were resurrected.
	Seen, Created, Updated, Refreshed, Vanished, Recreated, MarkedDead, Reappeared, Resurrected int
	// Errors counts failures on single objects; ErrorSamples holds the
	// first few messages.
	Errors       int
	ErrorSamples []string
	// Guarded is true when the mass-deletion guard stopped the run.
	Guarded bool
	// DryRun is true when nothing was changed.
	DryRun bool
}

func (r *ReconcileResult) addError(err error) {
	r.Errors++
	if len(r.ErrorSamples) < 20 {
		r.ErrorSamples = append(r.ErrorSamples, err.Error())
	}
}

// nextMark returns a reconciliation mark after every earlier one of this
// engine, at store precision (microseconds), so that two runs within one
// clock tick still tell their marks apart.
func (e *Engine) nextMark() time.Time {
	e.markMu.Lock()
	defer e.markMu.Unlock()
	m := e.clock.Now().UTC().Truncate(time.Microsecond)
	if !m.After(e.lastMark) {
		m = e.lastMark.Add(time.Microsecond)
	}
	e.lastMark = m
	return m
}

// Reconcile compares one resource and object class with its shadows, both
// ways, and repairs what differs: unknown objects get discovered shadows,
// drifted caches are updated, shadows with pending operations are refreshed,
// and shadows whose objects vanished go through discovery (re-created when
// assigned, marked dead when discovered; shadows whose add is still pending
// are left to refresh). Memory stays flat: the scan streams the resource,
// and the "not seen" side is found in the store by mark (ReconciledAt).
//
// A search failure (the resource went down mid-scan) stops the run with the
// error before anything is marked vanished. The mass-deletion guard stops
// the run, before anything is marked, with ErrMassDeletion.
func (e *Engine) Reconcile(ctx context.Context, opts ReconcileOptions) (ReconcileResult, error) {
	res := ReconcileResult{ResourceID: opts.ResourceID, Class: opts.Class, DryRun: opts.DryRun}
	r, err := e.resource(opts.ResourceID)
	if err != nil {
		return res, err
	}
	if opts.Class == "" {
		return res, errors.New("consistency: reconcile: Class is empty")
	}
	if opts.MaxVanishedShare < 0 || opts.MaxVanishedShare > 1 || opts.MaxVanished < 0 || opts.PageSize < 0 {
		return res, fmt.Errorf("consistency: reconcile: invalid guard or page size (MaxVanishedShare %v, MaxVanished %d, PageSize %d)",
			opts.MaxVanishedShare, opts.MaxVanished, opts.PageSize)
	}
	search, ok := r.conn.(connector.Searcher)
	if !ok {
		return res, fmt.Errorf("%w: resource %s", ErrNoSearch, r.id)
	}
	if opts.PageSize == 0 {
		opts.PageSize = 500
	}
	if opts.MaxVanishedShare == 0 {
		opts.MaxVanishedShare = MaxVanishedShareDefault
	}
	res.Mark = e.nextMark()

	err = search.Search(ctx, opts.Class, connector.SearchOptions{PageSize: opts.PageSize}, func(obj connector.Object) error {
		res.Seen++
		if err := e.reconcileObject(ctx, r, opts, &res, obj); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res.addError(fmt.Errorf("object %q: %w", obj.ID.UID, err))
		}
		if opts.Progress != nil {
			opts.Progress(ReconcileProgress{Phase: "scan", Done: res.Seen})
		}
		return nil
	})
	if err != nil {
		if connector.Classify(err).Communication() {
			e.markDown(r, Down, err.Error())
		}
		return res, fmt.Errorf("consistency: reconcile %s/%s: scan stopped after %d objects; nothing was marked vanished: %w",
			r.id, opts.Class, res.Seen, err)
	}

	unseen := shadow.Query{ResourceID: r.id, Class: opts.Class, Dead: shadow.DeadExclude, ReconciledBefore: res.Mark}
	if opts.DryRun {
		// Nothing was marked: every live shadow is a candidate, and each is
		// checked with a read.
		unseen.ReconciledBefore = time.Time{}
	}
	candidates, total, err := e.countVanished(ctx, r, opts, unseen)
	if err != nil {
		return res, err
	}
	if !opts.AllowMassDeletion {
		reason := ""
		switch {
		case res.Seen == 0 && candidates > 0:
			reason = fmt.Sprintf("the scan saw no objects while %d shadows are live", total)
		case opts.MaxVanished > 0 && candidates > opts.MaxVanished:
			reason = fmt.Sprintf("%d shadows would vanish, more than MaxVanished %d", candidates, opts.MaxVanished)
		case opts.MaxVanishedShare < 1 && float64(candidates) > opts.MaxVanishedShare*float64(total):
			reason = fmt.Sprintf("%d of %d live shadows would vanish, more than MaxVanishedShare %v", candidates, total, opts.MaxVanishedShare)
		}
		if reason != "" {
			res.Guarded = true
			e.log.Warn("reconciliation stopped by the mass-deletion guard", "resource", r.id, "class", opts.Class, "reason", reason)
			return res, fmt.Errorf("%w: %s/%s: %s", ErrMassDeletion, r.id, opts.Class, reason)
		}
	}

	done := 0
	for sh, err := range shadow.All(ctx, e.store, unseen, opts.PageSize) {
		if err != nil {
			return res, fmt.Errorf("consistency: reconcile %s/%s: listing unseen shadows: %w", r.id, opts.Class, err)
		}
		if err := e.sweepShadow(ctx, r, opts, &res, sh); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.addError(fmt.Errorf("shadow %s: %w", sh.ID, err))
		}
		done++
		if opts.Progress != nil {
			opts.Progress(ReconcileProgress{Phase: "sweep", Done: done})
		}
	}
	return res, ctx.Err()
}

// countVanished counts the live shadows of the run's class (total) and
// those of them q selects whose object exists on the resource (the
// candidates for vanishing).
func (e *Engine) countVanished(ctx context.Context, r *resource, opts ReconcileOptions, q shadow.Query) (candidates, total int, err error) {
	for sh, err := range shadow.All(ctx, e.store, shadow.Query{ResourceID: r.id, Class: opts.Class, Dead: shadow.DeadExclude}, opts.PageSize) {
		if err != nil {
			return 0, 0, fmt.Errorf("consistency: reconcile: counting shadows: %w", err)
		}
		if sh.Exists {
			total++
		}
	}
	for sh, err := range shadow.All(ctx, e.store, q, opts.PageSize) {
		if err != nil {
			return 0, 0, fmt.Errorf("consistency: reconcile: counting unseen shadows: %w", err)
		}
		if sh.Exists {
			if opts.DryRun {
				if _, gerr := r.conn.Get(ctx, sh.Class, sh.Identifiers()); gerr == nil || connector.Classify(gerr) != connector.CategoryNotFound {
					continue
				}
			}
			candidates++
		}
	}
	return candidates, total, nil
}

// reconcileObject handles one object the scan saw.
func (e *Engine) reconcileObject(ctx context.Context, r *resource, opts ReconcileOptions, res *ReconcileResult, obj connector.Object) error {
	list, err := e.store.List(ctx, shadow.Query{ResourceID: r.id, Class: opts.Class, UID: obj.ID.UID})
	if err != nil {
		return err
	}
	var live, dead *shadow.Shadow
	for _, sh := range list {
		switch {
		case sh.Live():
			live = sh
		case sh.Dead && dead == nil:
			dead = sh
		}
	}
	if live == nil && dead != nil {
		return e.reappeared(ctx, r, opts, res, dead, obj)
	}
	if live == nil {
		return e.unmatched(ctx, r, opts, res, obj)
	}
	unlock := e.lock(live.ID)
	defer unlock()
	sh, err := e.store.Get(ctx, live.ID)
	if err != nil {
		return err
	}
	if sh.Unfinished() && !opts.DryRun {
		if _, err := e.refreshLocked(ctx, sh, nil); err != nil {
			return err
		}
		res.Refreshed++
		if sh, err = e.store.Get(ctx, live.ID); err != nil {
			return err
		}
		if !sh.Live() {
			return nil
		}
		// The refresh may have changed the object: compare with it as it
		// is now, not as the scan saw it.
		if obj, err = r.conn.Get(ctx, sh.Class, sh.Identifiers()); err != nil {
			return err
		}
	}
	changes := sh.Attributes.Diff(obj.Attributes)
	renamed := obj.ID.Name != "" && obj.ID.Name != sh.Name
	if len(changes) > 0 || renamed {
		res.Updated++
		if h := opts.Handler.Changed; h != nil {
			view := sh.Clone()
			view.Attributes, view.Name = obj.Attributes.Clone(), obj.ID.Name
			if err := h(ctx, view, changes, opts.DryRun); err != nil {
				res.addError(fmt.Errorf("shadow %s: Changed handler: %w", sh.ID, err))
			}
		}
	}
	if opts.DryRun {
		return nil
	}
	sh.Attributes = obj.Attributes
	if obj.ID.Name != "" {
		sh.Name = obj.ID.Name
	}
	sh.ReconciledAt = res.Mark
	if !sh.Unfinished() {
		// The cache now holds what the resource has, and the host was told
		// of any drift: what a given-up operation left behind is handled.
		sh.NeedsReconciliation = false
	}
	return e.save(ctx, sh)
}

func (e *Engine) unmatched(ctx context.Context, r *resource, opts ReconcileOptions, res *ReconcileResult, obj connector.Object) error {
	if obj.ID.Name != "" {
		same, err := e.store.List(ctx, shadow.Query{ResourceID: r.id, Class: opts.Class, Name: obj.ID.Name, Dead: shadow.DeadExclude})
		if err != nil {
			return err
		}
		for _, sh := range same {
			switch {
			case !sh.Exists && pendingAdd(sh) != nil:
				// Its add is still on its way and may be this object:
				// refresh reads the resource before trying it again.
				return nil
			case sh.Exists && sh.UID != obj.ID.UID:
				// The object was replaced behind the engine's back (deleted
				// and made again under the same name, with a new UID).
				// When the old UID is gone, the shadow follows the new one.
				if _, err := r.conn.Get(ctx, sh.Class, connector.Identifiers{UID: sh.UID}); connector.Classify(err) == connector.CategoryNotFound && err != nil {
					return e.relink(ctx, r, opts, res, sh.ID, obj)
				}
			}
		}
	}
	sh := &shadow.Shadow{ResourceID: r.id, Class: opts.Class, UID: obj.ID.UID, Name: obj.ID.Name,
		Attributes: obj.Attributes, Exists: true, Origin: shadow.OriginDiscovered, ReconciledAt: res.Mark}
	res.Created++
	if !opts.DryRun {
		if err := e.store.Create(ctx, sh); err != nil {
			return err
		}
	}
	if h := opts.Handler.Unmatched; h != nil {
		return h(ctx, sh.Clone(), opts.DryRun)
	}
	return nil
}

// relink points shadow id at obj, which replaced its vanished object.
func (e *Engine) relink(ctx context.Context, r *resource, opts ReconcileOptions, res *ReconcileResult, id string, obj connector.Object) error {
	res.Updated++
	if opts.DryRun {
		return nil
	}
	unlock := e.lock(id)
	defer unlock()
	sh, err := e.store.Get(ctx, id)
	if err != nil {
		return err
	}
	changes := sh.Attributes.Diff(obj.Attributes)
	e.log.Info("object replaced behind the engine's back; shadow relinked", "resource", r.id, "shadow", id,
		"old_uid", sh.UID, "new_uid", obj.ID.UID)
	sh.UID, sh.Name, sh.Attributes, sh.ReconciledAt = obj.ID.UID, obj.ID.Name, obj.Attributes, res.Mark
	if err := e.save(ctx, sh); err != nil {
		return err
	}
	if h := opts.Handler.Changed; h != nil && len(changes) > 0 {
		return h(ctx, sh.Clone(), changes, opts.DryRun)
	}
	return nil
}

func (e *Engine) reappeared(ctx context.Context, r *resource, opts ReconcileOptions, res *ReconcileResult, dead *shadow.Shadow, obj connector.Object) error {
	res.Reappeared++
	resurrect := false
	if h := opts.Handler.Reappeared; h != nil {
		var err error
		if resurrect, err = h(ctx, dead.Clone(), obj.Clone(), opts.DryRun); err != nil {
			return err
		}
	}
	if !resurrect {
		e.log.Info("object reappeared behind a dead shadow", "resource", r.id, "shadow", dead.ID, "uid", obj.ID.UID)
		return nil
	}
	res.Resurrected++
	if opts.DryRun {
		return nil
	}
	unlock := e.lock(dead.ID)
	defer unlock()
	sh, err := e.store.Get(ctx, dead.ID)
	if err != nil {
		return err
	}
	sh.Dead, sh.DeadSince, sh.Exists = false, time.Time{}, true
	sh.Attributes, sh.Name, sh.ReconciledAt = obj.Attributes, obj.ID.Name, res.Mark
	sh.NextDue = e.nextDue(r, sh)
	return e.save(ctx, sh)
}

// sweepShadow handles a live shadow the scan did not see.
func (e *Engine) sweepShadow(ctx context.Context, r *resource, opts ReconcileOptions, res *ReconcileResult, listed *shadow.Shadow) error {
	if !listed.Exists {
		return nil // its add is still pending: refresh's business
	}
	unlock := e.lock(listed.ID)
	defer unlock()
	sh, err := e.store.Get(ctx, listed.ID)
	if errors.Is(err, shadow.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !sh.Live() || (!opts.DryRun && !sh.ReconciledAt.Before(res.Mark)) {
		return nil
	}
	// Confirm with a read: a paged search may miss an object created or
	// renamed while it ran.
	obj, gerr := r.conn.Get(ctx, sh.Class, sh.Identifiers())
	if gerr == nil {
		if !opts.DryRun {
			sh.Attributes, sh.ReconciledAt = obj.Attributes, res.Mark
			return e.save(ctx, sh)
		}
		return nil
	}
	if connector.Classify(gerr) != connector.CategoryNotFound {
		return gerr
	}
	res.Vanished++
	recreated := sh.Origin == shadow.OriginAssigned
	if opts.DryRun {
		if recreated {
			res.Recreated++
		} else {
			res.MarkedDead++
		}
	} else {
		if err := e.vanished(ctx, r, sh, gerr); err != nil {
			return err
		}
		if recreated {
			res.Recreated++
		} else {
			res.MarkedDead++
		}
	}
	if h := opts.Handler.Vanished; h != nil {
		return h(ctx, sh.Clone(), recreated, opts.DryRun)
	}
	return nil
}
