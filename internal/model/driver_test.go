package model_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
)

// The driver: one random step at a time, everything in one goroutine (the
// tasks run with one worker), so that a seed replays exactly.

var titles = []string{"engineer", "manager", "clerk", "director"}
var tags = []string{"red", "green", "blue", "amber"}

func (w *world) pick(n int) int { return w.rng.IntN(n) }

func (w *world) fresh() string {
	w.names++
	return fmt.Sprintf("n%03d", w.names)
}

// accounts returns the entities made through the engine.
func (w *world) accounts() []*entity {
	var out []*entity
	for _, e := range w.ents {
		if !e.foreign {
			out = append(out, e)
		}
	}
	return out
}

// steps runs n random steps. It returns an error for what the engine must
// never do at once (an unexpected error from an operation).
func (w *world) steps(ctx context.Context, n int) error {
	for w.step = 1; w.step <= n; w.step++ {
		for _, r := range w.res {
			if r.flap > 0 && w.step%r.flap == 0 {
				if r.conn.IsDown() {
					r.conn.Up()
					w.logf("flap %s up", r.id)
				} else {
					r.conn.Down()
					w.logf("flap %s down", r.id)
				}
			}
		}
		var err error
		switch x := w.pick(100); {
		case x < 22:
			err = w.add(ctx)
		case x < 44:
			err = w.modify(ctx, false)
		case x < 50:
			err = w.modify(ctx, true)
		case x < 56:
			err = w.delete(ctx)
		case x < 60:
			err = w.get(ctx)
		case x < 74:
			w.fault()
		case x < 77:
			err = w.remove(ctx)
		case x < 79:
			w.collidePending(ctx)
		case x < 88:
			d := time.Duration(w.pick(20*60)) * time.Second
			w.clk.Advance(d)
			w.logf("clock +%s", d)
		case x < 93:
			res, err := w.ref.Run(ctx)
			w.logf("refresh: %+v err=%v", res.Total, err)
		case x < 97:
			res, err := w.prop.Run(ctx)
			w.logf("propagate: %+v err=%v", res.Total, err)
		default:
			w.liveSync(ctx)
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", w.step, err)
		}
	}
	return nil
}

func (w *world) liveSync(ctx context.Context) {
	for _, r := range w.res {
		if r.sync != nil {
			res, err := r.sync.Run(ctx)
			w.logf("livesync %s: fetched %d processed %d token %q→%q err=%v", r.id, res.Fetched, res.Processed, res.TokenBefore, res.TokenAfter, err)
		}
	}
}

// expected reports whether err is a refusal or failure the engine may
// return for an operation: a categorized connector failure, a discovery
// failure, or a shadow that is gone.
func expected(err error) bool {
	var ce *connector.Error
	var de *consistency.DiscoveryError
	return errors.As(err, &ce) || errors.As(err, &de) || errors.Is(err, consistency.ErrShadowGone)
}

func (w *world) add(ctx context.Context) error {
	r := w.res[w.pick(len(w.res))]
	name := w.fresh()
	attrs := connector.Attributes{"uid": {name}, "mail": {name + "@example.com"}, "title": {titles[w.pick(len(titles))]}}
	e := &entity{res: r.idx, name: name}
	if w.pick(10) == 0 {
		// Someone made the object first: the add collides.
		f, err := w.put(r, name)
		if err != nil {
			return err
		}
		e.collide = f
		w.mu.Lock()
		w.link[name] = w.pick(2) == 0
		w.mu.Unlock()
		w.stats.add("collisions", 1)
	}
	out, err := w.eng.Add(ctx, consistency.AddRequest{ResourceID: r.id, Class: class, Name: name, Attributes: attrs})
	if err != nil && !expected(err) {
		return fmt.Errorf("add %s on %s: %w", name, r.id, err)
	}
	if out.Shadow == nil {
		return fmt.Errorf("add %s on %s: no shadow in the outcome (err %v)", name, r.id, err)
	}
	e.shadowID = out.Shadow.ID
	e.events = append(e.events, mevent{step: w.step, kind: "add", delta: connector.Delta{Type: connector.DeltaAdd, Attributes: attrs},
		opID: out.OperationID, status: out.Status, err: err})
	w.ents = append(w.ents, e)
	w.logf("add %s on %s → shadow %s op %d %s err=%v", name, r.id, e.shadowID, out.OperationID, out.Status, err)
	w.stats.add("op add "+out.Status.String(), 1)
	return nil
}

// put makes a foreign object named name on r, behind the engine's back.
func (w *world) put(r *resource, name string) (*entity, error) {
	attrs := connector.Attributes{"uid": {name}, "mail": {"someone.else@example.com"}, "title": {"foreign"}}
	if _, err := r.conn.Put(class, attrs); err != nil {
		return nil, err
	}
	f := &entity{res: r.idx, name: name, foreign: true, attrs: attrs}
	w.ents = append(w.ents, f)
	w.logf("put %s on %s behind the engine's back", name, r.id)
	return f, nil
}

// collidePending puts an object with the name of an add that has not
// reached the resource yet.
func (w *world) collidePending(ctx context.Context) {
	var cands []*entity
	for _, e := range w.accounts() {
		if e.collide != nil {
			continue
		}
		sh, err := w.store.Get(ctx, e.shadowID)
		if err != nil || sh.Exists || sh.Dead || !addUnfinished(sh) {
			continue
		}
		if _, taken := w.res[e.res].conn.ObjectByName(class, sh.Name); taken {
			continue
		}
		cands = append(cands, e)
	}
	if len(cands) == 0 {
		return
	}
	e := cands[w.pick(len(cands))]
	sh, _ := w.store.Get(ctx, e.shadowID)
	f, err := w.put(w.res[e.res], sh.Name)
	if err != nil {
		return
	}
	e.collide = f
	w.mu.Lock()
	w.link[sh.Name] = w.pick(2) == 0
	w.mu.Unlock()
	w.stats.add("collisions with a pending add", 1)
}

func (w *world) modify(ctx context.Context, rename bool) error {
	acc := w.accounts()
	if len(acc) == 0 {
		return nil
	}
	e := acc[w.pick(len(acc))]
	var changes []connector.AttributeDelta
	if rename {
		changes = append(changes, connector.AttributeDelta{Op: connector.Replace, Name: "uid", Values: []string{w.fresh()}})
	}
	for n := 1 + w.pick(2); n > 0; n-- {
		switch w.pick(5) {
		case 0:
			changes = append(changes, connector.AttributeDelta{Op: connector.AddValues, Name: "tag", Values: []string{tags[w.pick(len(tags))]}})
		case 1:
			changes = append(changes, connector.AttributeDelta{Op: connector.DeleteValues, Name: "tag", Values: []string{tags[w.pick(len(tags))]}})
		case 2:
			changes = append(changes, connector.AttributeDelta{Op: connector.Replace, Name: "title", Values: []string{titles[w.pick(len(titles))]}})
		case 3:
			changes = append(changes, connector.AttributeDelta{Op: connector.Replace, Name: "title"})
		default:
			changes = append(changes, connector.AttributeDelta{Op: connector.Replace, Name: "mail", Values: []string{fmt.Sprintf("m%d@example.com", w.pick(1000))}})
		}
	}
	out, err := w.eng.Modify(ctx, e.shadowID, changes)
	if err != nil && !expected(err) {
		return fmt.Errorf("modify %s: %w", e.shadowID, err)
	}
	ev := mevent{step: w.step, kind: "modify", delta: connector.Delta{Type: connector.DeltaModify, Changes: changes},
		opID: out.OperationID, status: out.Status, err: err}
	ev.refused = errors.Is(err, consistency.ErrShadowGone)
	e.events = append(e.events, ev)
	w.logf("modify %s %v → op %d %s err=%v", e.shadowID, changes, out.OperationID, out.Status, err)
	if ev.refused {
		w.stats.add("op modify refused (gone)", 1)
	} else {
		w.stats.add("op modify "+out.Status.String(), 1)
	}
	return nil
}

func (w *world) delete(ctx context.Context) error {
	acc := w.accounts()
	if len(acc) == 0 {
		return nil
	}
	e := acc[w.pick(len(acc))]
	out, err := w.eng.Delete(ctx, e.shadowID)
	if err != nil && !expected(err) {
		return fmt.Errorf("delete %s: %w", e.shadowID, err)
	}
	ev := mevent{step: w.step, kind: "delete", delta: connector.Delta{Type: connector.DeltaDelete},
		opID: out.OperationID, status: out.Status, err: err}
	ev.refused = errors.Is(err, consistency.ErrShadowGone)
	e.events = append(e.events, ev)
	w.logf("delete %s → op %d %s err=%v", e.shadowID, out.OperationID, out.Status, err)
	w.stats.add("op delete "+out.Status.String(), 1)
	return nil
}

func (w *world) get(ctx context.Context) error {
	acc := w.accounts()
	if len(acc) == 0 {
		return nil
	}
	e := acc[w.pick(len(acc))]
	for _, ev := range e.events {
		if ev.kind == "remove" {
			// A get of a vanished object re-creates it: the model leaves
			// that to modifies.
			return nil
		}
	}
	v, err := w.eng.Get(ctx, e.shadowID, consistency.GetOptions{Future: w.pick(2) == 0})
	if err != nil && !expected(err) {
		return fmt.Errorf("get %s: %w", e.shadowID, err)
	}
	w.logf("get %s → exists %v fetched %v err=%v", e.shadowID, v.Exists, v.Fetched, err)
	return nil
}

// remove deletes an account's object behind the engine's back. Only objects
// whose shadow has no unfinished work are removed, so that the removal
// falls between the shadow's operations in the model's order.
func (w *world) remove(ctx context.Context) error {
	var cands []*entity
	for _, e := range w.accounts() {
		sh, err := w.store.Get(ctx, e.shadowID)
		if err != nil || !sh.Live() || sh.Unfinished() {
			continue
		}
		if _, ok := w.res[e.res].conn.Object(class, sh.UID); !ok {
			continue
		}
		cands = append(cands, e)
	}
	if len(cands) == 0 {
		return nil
	}
	e := cands[w.pick(len(cands))]
	sh, _ := w.store.Get(ctx, e.shadowID)
	if err := w.res[e.res].conn.Remove(class, sh.UID); err != nil {
		return fmt.Errorf("remove %s: %w", sh.UID, err)
	}
	e.events = append(e.events, mevent{step: w.step, kind: "remove"})
	w.logf("remove %s (%s, shadow %s) behind the engine's back", sh.UID, sh.Name, e.shadowID)
	w.stats.add("removed behind the back", 1)
	return nil
}

// fault injects one fault into a random resource.
func (w *world) fault() {
	r := w.res[w.pick(len(w.res))]
	switch x := w.pick(100); {
	case x < 15:
		r.conn.Down()
		w.logf("%s down", r.id)
	case x < 30:
		r.conn.Up()
		w.logf("%s up", r.id)
	case x < 50:
		cats := []connector.Category{connector.CategoryNotSent, connector.CategoryOutcomeUnknown, connector.CategoryThrottled,
			connector.CategorySchema, connector.CategoryGeneric, connector.CategoryPolicy, connector.CategoryPermission}
		c, n := cats[w.pick(len(cats))], 1+w.pick(2)
		r.conn.FailNext(n, c)
		w.logf("%s fail next %d with %s", r.id, n, c)
		w.stats.add("fault "+c.String(), 1)
	case x < 70:
		n := 1 + w.pick(2)
		r.conn.FailNextAfterApply(n)
		w.logf("%s fail next %d writes after applying them", r.id, n)
		w.stats.add("fault applied then unknown", 1)
	case x < 82:
		d := time.Duration(1+w.pick(30)) * time.Minute
		r.conn.Throttle(w.clk.Now().Add(d))
		w.logf("%s throttled for %s", r.id, d)
		w.stats.add("fault throttle", 1)
	case x < 86:
		r.conn.FailNext(1, connector.CategoryConfiguration)
		w.logf("%s fail next with configuration", r.id)
		w.stats.add("fault configuration", 1)
	default:
		if err := w.eng.MarkUp(r.id); err == nil {
			w.logf("%s marked up by the operator", r.id)
		}
	}
}

// quiesce brings every resource up, clears the faults and runs the tasks
// until no operation is left to do.
func (w *world) quiesce(ctx context.Context) error {
	w.logf("--- quiesce")
	var wait time.Duration
	for _, r := range w.res {
		r.conn.Up()
		r.conn.FailNext(0, 0)
		r.conn.FailNextAfterApply(0)
		r.conn.Throttle(time.Time{})
		if err := w.eng.MarkUp(r.id); err != nil {
			return err
		}
		wait = max(wait, r.settings.OperationRetryPeriod, r.settings.OperationGroupingInterval)
	}
	wait += time.Minute
	for round := 0; ; round++ {
		// Throttles of up to 30 minutes and retry periods up to 10: every
		// wait is over after a few rounds.
		w.clk.Advance(max(wait, 31*time.Minute))
		pres, perr := w.prop.Run(ctx)
		rres, rerr := w.ref.Run(ctx)
		w.logf("quiesce round %d: propagate %+v err=%v %v; refresh %+v err=%v %v", round, pres.Total, perr, pres.Errors, rres.Total, rerr, rres.Errors)
		if perr != nil || rerr != nil {
			return fmt.Errorf("quiesce: propagate: %v; refresh: %v", perr, rerr)
		}
		n, err := w.store.Count(ctx, shadow.Query{Unfinished: true})
		if err != nil {
			return err
		}
		if n == 0 {
			w.stats.add(fmt.Sprintf("quiesce rounds %d", round+1), 1)
			break
		}
		if round == 20 {
			return fmt.Errorf("quiesce: %d shadows still have unfinished operations after %d rounds", n, round+1)
		}
	}
	for _, r := range w.res {
		if r.sync == nil {
			continue
		}
		for try := 0; ; try++ {
			res, err := r.sync.Run(ctx)
			w.logf("final livesync %s: fetched %d processed %d token %q→%q err=%v", r.id, res.Fetched, res.Processed, res.TokenBefore, res.TokenAfter, err)
			if err != nil {
				return fmt.Errorf("final live sync of %s: %w", r.id, err)
			}
			if res.Fetched == 0 {
				break
			}
			if try == 5 {
				return fmt.Errorf("final live sync of %s still fetches changes after %d runs", r.id, try+1)
			}
		}
	}
	return nil
}

// addUnfinished reports whether sh has an unfinished add.
func addUnfinished(sh *shadow.Shadow) bool {
	for _, op := range sh.Pending {
		if !op.Completed() && op.Delta.Type == connector.DeltaAdd {
			return true
		}
	}
	return false
}
