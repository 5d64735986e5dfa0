package connector

import (
	"errors"
	"fmt"
	"slices"
)

// ErrUnmergeable is returned (wrapped) by Merge when the deltas cannot all
// hold for one object: a modify or delete after a delete, an add of an object
// that exists. Such a list is a bug upstream; Merge never guesses.
var ErrUnmergeable = errors.New("connector: deltas cannot be merged")

// Merge folds the deltas of one object, in order, into one delta with the
// same effect. The rules:
//
//   - add + modify → add with the modified attributes
//   - modify + modify → one modify: a replace wins over earlier value adds and
//     deletes of the same attribute; a value add and a later delete of the
//     same value cancel (and the other way round)
//   - add + delete → nothing at all (ok is false)
//   - modify + delete → delete
//   - delete + add → recreate with the add's attributes
//
// ok is false when the merged delta does nothing, so that a caller makes no
// call at all. For every object state on which the deltas apply one by one
// (see Apply), applying the merged delta gives the same state. Merge is pure:
// the inputs are not modified and the result shares no memory with them.
func Merge(deltas []Delta) (merged Delta, ok bool, err error) {
	m := merger{state: mergeEmpty}
	for i, d := range deltas {
		if err := d.Validate(); err != nil {
			return Delta{}, false, fmt.Errorf("delta %d: %w", i, err)
		}
		if err := m.add(d); err != nil {
			return Delta{}, false, fmt.Errorf("%w: delta %d (%s) after %s", ErrUnmergeable, i, d.Type, m.state)
		}
	}
	return m.result()
}

type mergeState uint8

const (
	mergeEmpty     mergeState = iota // nothing seen yet
	mergeCancelled                   // an add was cancelled by a delete: the object is absent
	mergeAdd
	mergeModify
	mergeDelete
	mergeRecreate
)

func (s mergeState) String() string {
	return [...]string{"nothing", "add+delete", "add", "modify", "delete", "recreate"}[s]
}

type merger struct {
	state mergeState
	attrs Attributes // add, recreate
	mods  modSet     // modify
}

var errBadSequence = errors.New("bad sequence")

func (m *merger) add(d Delta) error {
	switch d.Type {
	case DeltaAdd:
		switch m.state {
		case mergeEmpty, mergeCancelled:
			m.state, m.attrs = mergeAdd, ApplyChanges(nil, attributesAsReplace(d.Attributes))
		case mergeDelete:
			m.state, m.attrs = mergeRecreate, ApplyChanges(nil, attributesAsReplace(d.Attributes))
		default:
			return errBadSequence
		}
	case DeltaModify:
		switch m.state {
		case mergeEmpty, mergeModify:
			m.state = mergeModify
			for _, c := range d.Changes {
				m.mods.apply(c)
			}
		case mergeAdd, mergeRecreate:
			m.attrs = ApplyChanges(m.attrs, d.Changes)
		default:
			return errBadSequence
		}
	case DeltaDelete:
		switch m.state {
		case mergeEmpty, mergeModify, mergeRecreate:
			m.state, m.attrs, m.mods = mergeDelete, nil, modSet{}
		case mergeAdd:
			m.state, m.attrs = mergeCancelled, nil
		default:
			return errBadSequence
		}
	case DeltaRecreate:
		switch m.state {
		case mergeEmpty, mergeModify, mergeRecreate:
			m.state, m.attrs, m.mods = mergeRecreate, ApplyChanges(nil, attributesAsReplace(d.Attributes)), modSet{}
		case mergeAdd:
			m.attrs = ApplyChanges(nil, attributesAsReplace(d.Attributes))
		default:
			return errBadSequence
		}
	}
	return nil
}

func (m *merger) result() (Delta, bool, error) {
	switch m.state {
	case mergeAdd:
		return Delta{Type: DeltaAdd, Attributes: m.attrs}, true, nil
	case mergeRecreate:
		return Delta{Type: DeltaRecreate, Attributes: m.attrs}, true, nil
	case mergeDelete:
		return Delta{Type: DeltaDelete}, true, nil
	case mergeModify:
		ch := m.mods.changes()
		if len(ch) == 0 {
			return Delta{}, false, nil
		}
		return Delta{Type: DeltaModify, Changes: ch}, true, nil
	}
	return Delta{}, false, nil
}

// modSet is the merged effect of attribute deltas, one entry per attribute in
// order of first appearance. Each entry is either a replace (a constant value
// set) or a pair (values deleted, values added) with no value in both.
type modSet struct {
	order []string
	attrs map[string]*attrMod
}

type attrMod struct {
	replace bool
	vals    []string // replace: the values
	add     []string // not replace
	del     []string // not replace
}

func (s *modSet) apply(c AttributeDelta) {
	if s.attrs == nil {
		s.attrs = map[string]*attrMod{}
	}
	a := s.attrs[c.Name]
	if a == nil {
		a = &attrMod{}
		s.attrs[c.Name] = a
		s.order = append(s.order, c.Name)
	}
	switch {
	case c.Op == Replace || (c.Op == DeleteValues && len(c.Values) == 0):
		*a = attrMod{replace: true, vals: normalizeValues(c.Values)}
	case c.Op == AddValues && a.replace:
		a.vals = union(a.vals, c.Values)
	case c.Op == AddValues:
		a.add = union(a.add, c.Values)
		a.del = minus(a.del, c.Values)
	case c.Op == DeleteValues && a.replace:
		a.vals = minus(a.vals, c.Values)
	case c.Op == DeleteValues:
		a.add = minus(a.add, c.Values)
		a.del = union(a.del, c.Values)
	}
}

func (s *modSet) changes() []AttributeDelta {
	var out []AttributeDelta
	for _, name := range s.order {
		a := s.attrs[name]
		if a.replace {
			out = append(out, AttributeDelta{Op: Replace, Name: name, Values: slices.Clone(a.vals)})
			continue
		}
		if len(a.del) > 0 {
			out = append(out, AttributeDelta{Op: DeleteValues, Name: name, Values: slices.Clone(a.del)})
		}
		if len(a.add) > 0 {
			out = append(out, AttributeDelta{Op: AddValues, Name: name, Values: slices.Clone(a.add)})
		}
	}
	return out
}

func union(set, vals []string) []string {
	out := slices.Clone(set)
	for _, v := range vals {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func minus(set, vals []string) []string {
	return slices.DeleteFunc(slices.Clone(set), func(v string) bool { return slices.Contains(vals, v) })
}
