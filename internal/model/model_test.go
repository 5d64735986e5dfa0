package model_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
)

// The model: every object the test makes (through the engine, or behind its
// back) is an entity with the events that happened to it, in order. Once the
// world is quiet, each operation's final outcome is read from its shadow,
// and folding the events gives the states the object may be in: one, or
// more when an operation failed after an attempt whose outcome was unknown
// (it may or may not have taken effect; the engine then marks the shadow
// for reconciliation, and the model accepts both).

// entity is one object of the model.
type entity struct {
	res      int
	name     string // the name it was made with
	shadowID string // the engine's shadow; "" for a foreign object
	// foreign objects were Put behind the engine's back; attrs is what was
	// put.
	foreign bool
	attrs   connector.Attributes
	// collide is the foreign object whose name an add took; absorbed is set
	// on the foreign object when the add linked to it.
	collide  *entity
	absorbed bool
	// maybeAbsorbed: the add's outcome was unknown, and the check may have
	// taken this object for the add's own.
	maybeAbsorbed bool
	events        []mevent
	// wild (set by fold): too many possible states; any object may be its.
	wild bool
	// orphans (set by fold): objects an operation given up after an
	// attempt of unknown outcome may have made without the shadow knowing.
	orphans []state
}

// mevent is one thing that happened to an entity.
type mevent struct {
	step    int
	kind    string // "add", "modify", "delete", "remove" (behind the back)
	delta   connector.Delta
	opID    int64 // 0: the engine recorded no operation
	status  consistency.Status
	err     error
	refused bool // the engine refused it without recording an operation
	linked  bool // set by fold: the add met the object of its name and linked to it
}

// state is one possible state of an object.
type state struct {
	exists bool
	attrs  connector.Attributes
}

func (s state) key() string {
	if !s.exists {
		// A gone object's last attributes still count: a modify
		// re-creates it from them.
		return "-" + fmt.Sprint(s.attrs.Normalize())
	}
	return fmt.Sprint(s.attrs.Normalize())
}

// maxStates caps the states the model keeps per entity.
const maxStates = 1024

// outcome is an operation's final outcome, as the model uses it.
type outcome uint8

const (
	applied outcome = iota + 1
	notApplied
	maybeApplied
)

// fold returns the states entity e may be in at the end, and what it found
// wrong on the way. Each operation's final outcome is read from sh, the
// entity's shadow as stored at the end (nil when gone): done ones are
// applied, cancelled ones and those never sent or failed with an error that
// says nothing was done are not, and those that failed after an attempt of
// unknown outcome may or may not be.
func (w *world) fold(e *entity, sh *shadow.Shadow) ([]state, []string) {
	var problems []string
	if e.foreign {
		switch {
		case e.maybeAbsorbed:
			return []state{{}, {exists: true, attrs: e.attrs}}, nil
		case e.absorbed:
			return []state{{}}, nil
		}
		return []state{{exists: true, attrs: e.attrs}}, nil
	}
	states := []state{{}}
	seen := map[int64]bool{}
	ambiguous := false
	for _, ev := range e.events {
		if ev.kind == "remove" {
			for i := range states {
				states[i].exists = false
			}
			continue
		}
		if ev.refused || ev.opID == 0 || seen[ev.opID] {
			continue
		}
		seen[ev.opID] = true
		var op *shadow.PendingOperation
		if sh != nil {
			op = sh.Operation(ev.opID)
		}
		if op == nil {
			problems = append(problems, fmt.Sprintf("step %d: %s operation %d of shadow %s is gone from the shadow", ev.step, ev.kind, ev.opID, e.shadowID))
			continue
		}
		var oc outcome
		switch {
		case !op.Completed():
			problems = append(problems, fmt.Sprintf("step %d: %s operation %d of shadow %s is still unfinished (%s %s attempt %d: %s)",
				ev.step, ev.kind, ev.opID, e.shadowID, op.Type, op.Status, op.Attempt, op.LastError))
			oc = maybeApplied
		case op.Result == shadow.ResultSuccess:
			oc = applied
		case op.CancelReason != "" || op.Attempt == 0:
			oc = notApplied
		case w.hadUnknown(e.shadowID, op.ID) || op.LastErrorCategory == connector.CategoryOutcomeUnknown:
			oc = maybeApplied
		default:
			// Every attempt failed with an error that says nothing was done.
			oc = notApplied
		}
		if oc != applied && ev.status == consistency.Done {
			problems = append(problems, fmt.Sprintf("step %d: %s operation %d of shadow %s was reported done but ended %s (%s)",
				ev.step, ev.kind, ev.opID, e.shadowID, op.Result, op.LastError))
		}
		if oc == applied && ev.status == consistency.Failed {
			problems = append(problems, fmt.Sprintf("step %d: %s operation %d of shadow %s was reported failed but ended successful",
				ev.step, ev.kind, ev.opID, e.shadowID))
		}
		if op.Result == shadow.ResultFailure && op.CancelReason == "" && sh != nil && !sh.Dead && !sh.NeedsReconciliation {
			problems = append(problems, fmt.Sprintf("step %d: %s operation %d of shadow %s failed (%s: %s) but the shadow is neither dead nor marked for reconciliation",
				ev.step, ev.kind, ev.opID, e.shadowID, op.LastErrorCategory, op.LastError))
		}
		if ev.kind == "add" && op.Result == shadow.ResultFailure && sh != nil && !sh.Dead && !sh.NeedsReconciliation {
			problems = append(problems, fmt.Sprintf("step %d: add of shadow %s failed but the shadow is not dead", ev.step, e.shadowID))
		}
		if ev.kind == "add" && e.collide != nil {
			// A collision shows as a discovery, or as an attempt of unknown
			// outcome whose check found the object by name.
			h := w.history(e.shadowID, op.ID)
			ev.linked = strings.Contains(h, "discovered")
			if oc != notApplied && !ev.linked && w.hadUnknown(e.shadowID, op.ID) {
				// The engine cannot tell the other's object from its own
				// add of unknown outcome (documented): it may take the
				// object as its add's result, merged operations included.
				// Either object may be the shadow's (live sync adopts an
				// object of the name of an add of unknown outcome too), and
				// what follows may or may not show on it.
				ambiguous = true
				e.collide.maybeAbsorbed = true
				var next []state
				for _, s := range states {
					next = append(next, w.apply(e, ev, s), state{exists: true, attrs: e.collide.attrs.Clone()})
					if oc == maybeApplied {
						next = append(next, s)
					}
				}
				states = dedupe(next)
				continue
			}
		} else if ambiguous && oc == applied {
			oc = maybeApplied
		}
		var next []state
		for _, s := range states {
			if oc != notApplied {
				a := w.apply(e, ev, s)
				next = append(next, a)
				if oc == maybeApplied && a.exists && sh != nil && (sh.NeedsReconciliation || sh.Dead) {
					e.orphans = append(e.orphans, a)
				}
			}
			if oc != applied {
				next = append(next, s)
			}
		}
		states = dedupe(next)
		if len(states) > maxStates {
			// Too many uncertain operations on one object: the model
			// gives up on it (counted; see match).
			e.wild = true
			w.stats.add("entities beyond the model's state cap", 1)
			return nil, problems
		}
	}
	return states, problems
}

// apply returns s after the successful operation ev of e.
func (w *world) apply(e *entity, ev mevent, s state) state {
	switch ev.delta.Type {
	case connector.DeltaAdd:
		if e.collide != nil && ev.linked {
			// The name was taken behind the engine's back: a successful add
			// linked the shadow to that object.
			e.collide.absorbed = true
			return state{exists: true, attrs: e.collide.attrs.Clone()}
		}
		return state{exists: true, attrs: ev.delta.Attributes.Clone()}
	case connector.DeltaModify:
		// A modify of a vanished object re-creates it from the cache.
		return state{exists: true, attrs: connector.ApplyChanges(s.attrs, ev.delta.Changes)}
	case connector.DeltaDelete:
		return state{exists: false, attrs: s.attrs}
	}
	return s
}

func dedupe(states []state) []state {
	seen := map[string]bool{}
	out := states[:0:0]
	for _, s := range states {
		k := s.key()
		if !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// match checks that the objects of a resource are exactly those the model's
// entities may have: every object is one entity's, in one of its states,
// and every entity without an object may be gone. It returns what differs.
//
// orphans are states an object may have without an entity claiming it: an
// operation given up after an attempt of unknown outcome may have made an
// object the shadow does not know of (it re-created a vanished one), and the
// shadow is marked for reconciliation, which finds it.
func match(ents []*entity, states map[*entity][]state, objects []connector.Object, orphans map[string]bool) []string {
	byName := map[string]connector.Attributes{}
	var problems []string
	for _, o := range objects {
		if _, dup := byName[o.ID.Name]; dup {
			problems = append(problems, fmt.Sprintf("two objects named %q", o.ID.Name))
		}
		byName[o.ID.Name] = o.Attributes
	}
	used := map[string]bool{}
	var assign func(i int) bool
	wild := false
	for _, e := range ents {
		wild = wild || e.wild
	}
	assign = func(i int) bool {
		if i == len(ents) {
			for n, a := range byName {
				if !used[n] && !wild && !orphans[(state{exists: true, attrs: a}).key()] {
					return false
				}
			}
			return true
		}
		if ents[i].wild {
			return assign(i + 1)
		}
		for _, s := range states[ents[i]] {
			if !s.exists {
				if assign(i + 1) {
					return true
				}
				continue
			}
			n := s.attrs.Get("uid")
			if used[n] {
				continue
			}
			if got, ok := byName[n]; ok && got.Equal(s.attrs) {
				used[n] = true
				if assign(i + 1) {
					return true
				}
				delete(used, n)
			}
		}
		return false
	}
	if assign(0) {
		return problems
	}
	// Explain: per entity, what it may be and what is there.
	var lines []string
	claimed := map[string]bool{}
	for _, e := range ents {
		var ss []string
		ok := false
		for _, s := range states[e] {
			ss = append(ss, s.key())
			if !s.exists {
				ok = true
				continue
			}
			n := s.attrs.Get("uid")
			claimed[n] = true
			if got, found := byName[n]; found && got.Equal(s.attrs) {
				ok = true
			}
		}
		if !ok {
			var got []string
			for _, s := range states[e] {
				if s.exists {
					if a, found := byName[s.attrs.Get("uid")]; found {
						got = append(got, fmt.Sprint(a.Normalize()))
					} else {
						got = append(got, "(no object named "+s.attrs.Get("uid")+")")
					}
				}
			}
			lines = append(lines, fmt.Sprintf("entity %s (shadow %s): model %s; resource %s", e.name, e.shadowID, strings.Join(ss, " | "), strings.Join(got, " | ")))
		}
	}
	var extra []string
	for n := range byName {
		if !claimed[n] && !orphans[(state{exists: true, attrs: byName[n]}).key()] {
			extra = append(extra, fmt.Sprintf("%s %v", n, byName[n].Normalize()))
		}
	}
	sort.Strings(extra)
	for _, x := range extra {
		lines = append(lines, "object not in the model: "+x)
	}
	if len(lines) == 0 {
		lines = append(lines, "no assignment of objects to entities fits (two entities claim one object)")
	}
	slices.Sort(lines)
	return append(problems, lines...)
}
