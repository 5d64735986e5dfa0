package connector

import (
	"slices"
	"sort"
)

// ObjectClass names a kind of resource object, such as "inetOrgPerson" or
// "account". Its meaning belongs to the connector.
type ObjectClass string

// Identifiers name one resource object.
//
// UID is the primary identifier: assigned by the resource, stable for the
// object's life (an LDAP entryUUID, a table's key). It is empty while the
// object has never been created.
//
// Name is the secondary identifier: unique on the resource at any one time but
// free to change (an LDAP DN, a username). A connector derives it from the
// object's attributes on add, and reports the new one after a rename.
type Identifiers struct {
	UID  string
	Name string
}

// IsZero reports whether neither identifier is set.
func (id Identifiers) IsZero() bool { return id.UID == "" && id.Name == "" }

// Attributes are the multi-valued attributes of a resource object, by name.
// Values are strings; a binary value is carried as its bytes in a string. An
// attribute with no values is the same as an absent one, and value order
// carries no meaning (value sets).
type Attributes map[string][]string

// Clone returns a deep copy of a. The clone of nil is nil.
func (a Attributes) Clone() Attributes {
	if a == nil {
		return nil
	}
	out := make(Attributes, len(a))
	for k, v := range a {
		out[k] = slices.Clone(v)
	}
	return out
}

// Get returns the first value of name, or "".
func (a Attributes) Get(name string) string {
	if v := a[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Equal reports whether a and b hold the same value sets. Absent and empty
// attributes are equal; duplicate values count once.
func (a Attributes) Equal(b Attributes) bool {
	for k, v := range a {
		if !sameSet(v, b[k]) {
			return false
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok && len(v) > 0 {
			return false
		}
	}
	return true
}

// Normalize returns a copy of a with each value set sorted and de-duplicated
// and empty attributes dropped: the canonical form, for comparisons and
// stable output.
func (a Attributes) Normalize() Attributes {
	out := make(Attributes, len(a))
	for k, v := range a {
		if n := normalizeValues(v); len(n) > 0 {
			out[k] = n
		}
	}
	return out
}

// Names returns the attribute names that have values, sorted.
func (a Attributes) Names() []string {
	names := make([]string, 0, len(a))
	for k, v := range a {
		if len(v) > 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

// Diff returns the attribute deltas that turn a into b: one replace per
// attribute whose value set differs (an empty replace for one that vanished).
// The deltas are sorted by attribute name.
func (a Attributes) Diff(b Attributes) []AttributeDelta {
	var out []AttributeDelta
	for _, k := range unionNames(a, b) {
		if !sameSet(a[k], b[k]) {
			out = append(out, AttributeDelta{Op: Replace, Name: k, Values: normalizeValues(b[k])})
		}
	}
	return out
}

func unionNames(a, b Attributes) []string {
	seen := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		seen[k] = struct{}{}
	}
	for k := range b {
		seen[k] = struct{}{}
	}
	names := make([]string, 0, len(seen))
	for k := range seen {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func normalizeValues(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	out := slices.Clone(v)
	sort.Strings(out)
	return slices.Compact(out)
}

func sameSet(a, b []string) bool {
	if len(a) == len(b) {
		// Fast path: identical slices in the same order.
		same := true
		for i := range a {
			if a[i] != b[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	na, nb := normalizeValues(a), normalizeValues(b)
	return slices.Equal(na, nb)
}

// Object is a resource object as a connector reads it.
type Object struct {
	Class      ObjectClass
	ID         Identifiers
	Attributes Attributes
}

// Clone returns a deep copy of o.
func (o Object) Clone() Object {
	o.Attributes = o.Attributes.Clone()
	return o
}
