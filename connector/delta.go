package connector

import (
	"fmt"
	"slices"
)

// ModOp is what an attribute delta does to an attribute's values.
type ModOp uint8

// The attribute modification operations. Values are sets: adding a value that
// is present, or deleting one that is absent, changes nothing.
const (
	// AddValues adds the delta's values to the attribute.
	AddValues ModOp = iota + 1
	// DeleteValues removes the delta's values; with no values it removes
	// the whole attribute.
	DeleteValues
	// Replace sets the attribute to exactly the delta's values; with no
	// values it removes the attribute.
	Replace
)

// String returns the ModOp as text for logs and errors.
func (op ModOp) String() string {
	switch op {
	case AddValues:
		return "add"
	case DeleteValues:
		return "delete"
	case Replace:
		return "replace"
	}
	return fmt.Sprintf("ModOp(%d)", op)
}

// AttributeDelta changes one attribute.
type AttributeDelta struct {
	Op     ModOp
	Name   string
	Values []string
}

// DeltaType is the kind of an object delta.
type DeltaType uint8

// The object delta types.
const (
	// DeltaAdd creates an object with Delta.Attributes.
	DeltaAdd DeltaType = iota + 1
	// DeltaModify applies Delta.Changes to an existing object.
	DeltaModify
	// DeltaDelete deletes an existing object.
	DeltaDelete
	// DeltaRecreate deletes an existing object and creates it again with
	// Delta.Attributes. It only comes out of Merge (delete followed by add).
	DeltaRecreate
)

// String returns the DeltaType as text for logs and errors.
func (t DeltaType) String() string {
	switch t {
	case DeltaAdd:
		return "add"
	case DeltaModify:
		return "modify"
	case DeltaDelete:
		return "delete"
	case DeltaRecreate:
		return "recreate"
	}
	return fmt.Sprintf("DeltaType(%d)", t)
}

// Delta is an operation on one object: add with attributes, modify with
// attribute deltas, delete, or (from Merge) recreate.
type Delta struct {
	Type       DeltaType
	Attributes Attributes       // add and recreate
	Changes    []AttributeDelta // modify
}

// Clone returns a deep copy of d.
func (d Delta) Clone() Delta {
	d.Attributes = d.Attributes.Clone()
	if d.Changes != nil {
		ch := make([]AttributeDelta, len(d.Changes))
		for i, c := range d.Changes {
			c.Values = slices.Clone(c.Values)
			ch[i] = c
		}
		d.Changes = ch
	}
	return d
}

// Validate reports a delta that no connector could execute: an unknown type
// or modification, an attribute delta without a name, attributes on a modify
// or delete, changes on an add.
func (d Delta) Validate() error {
	switch d.Type {
	case DeltaAdd, DeltaRecreate:
		if len(d.Changes) > 0 {
			return fmt.Errorf("connector: %s delta carries attribute changes", d.Type)
		}
		for name := range d.Attributes {
			if name == "" {
				return fmt.Errorf("connector: %s delta has an attribute with an empty name", d.Type)
			}
		}
	case DeltaModify:
		if len(d.Attributes) > 0 {
			return fmt.Errorf("connector: modify delta carries attributes; use Changes")
		}
		for i, c := range d.Changes {
			if c.Name == "" {
				return fmt.Errorf("connector: modify delta change %d has an empty attribute name", i)
			}
			if c.Op < AddValues || c.Op > Replace {
				return fmt.Errorf("connector: modify delta change %d (%q) has unknown operation %d", i, c.Name, c.Op)
			}
		}
	case DeltaDelete:
		if len(d.Attributes) > 0 || len(d.Changes) > 0 {
			return fmt.Errorf("connector: delete delta carries attributes or changes")
		}
	default:
		return fmt.Errorf("connector: unknown delta type %d", d.Type)
	}
	return nil
}

// ApplyChanges returns attrs with the attribute deltas applied in order.
// attrs is not modified.
func ApplyChanges(attrs Attributes, changes []AttributeDelta) Attributes {
	out := attrs.Clone()
	if out == nil {
		out = Attributes{}
	}
	for _, c := range changes {
		applyOne(out, c)
	}
	return out
}

func applyOne(a Attributes, c AttributeDelta) {
	switch c.Op {
	case Replace:
		if n := normalizeValues(c.Values); len(n) > 0 {
			a[c.Name] = n
		} else {
			delete(a, c.Name)
		}
	case AddValues:
		cur := a[c.Name]
		for _, v := range c.Values {
			if !slices.Contains(cur, v) {
				cur = append(cur, v)
			}
		}
		if len(cur) > 0 {
			a[c.Name] = cur
		}
	case DeleteValues:
		if len(c.Values) == 0 {
			delete(a, c.Name)
			return
		}
		cur := slices.DeleteFunc(slices.Clone(a[c.Name]), func(v string) bool { return slices.Contains(c.Values, v) })
		if len(cur) > 0 {
			a[c.Name] = cur
		} else {
			delete(a, c.Name)
		}
	}
}

// Apply applies d to an object state: attrs with exists telling whether the
// object exists. It returns the new state. It fails, as a resource would,
// with ErrAlreadyExists for an add of an existing object and ErrNotFound for
// a modify, delete or recreate of a missing one. attrs is not modified.
func Apply(attrs Attributes, exists bool, d Delta) (Attributes, bool, error) {
	if err := d.Validate(); err != nil {
		return nil, false, err
	}
	switch d.Type {
	case DeltaAdd:
		if exists {
			return nil, false, NewError(CategoryAlreadyExists, "apply", fmt.Errorf("add of an existing object"))
		}
		return ApplyChanges(nil, attributesAsReplace(d.Attributes)), true, nil
	case DeltaModify:
		if !exists {
			return nil, false, NewError(CategoryNotFound, "apply", fmt.Errorf("modify of a missing object"))
		}
		return ApplyChanges(attrs, d.Changes), true, nil
	case DeltaDelete:
		if !exists {
			return nil, false, NewError(CategoryNotFound, "apply", fmt.Errorf("delete of a missing object"))
		}
		return nil, false, nil
	default: // DeltaRecreate
		if !exists {
			return nil, false, NewError(CategoryNotFound, "apply", fmt.Errorf("recreate of a missing object"))
		}
		return ApplyChanges(nil, attributesAsReplace(d.Attributes)), true, nil
	}
}

func attributesAsReplace(a Attributes) []AttributeDelta {
	out := make([]AttributeDelta, 0, len(a))
	for _, k := range a.Names() {
		out = append(out, AttributeDelta{Op: Replace, Name: k, Values: a[k]})
	}
	return out
}
