package connector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func add(kv ...string) Delta      { return Delta{Type: DeltaAdd, Attributes: attrs(kv...)} }
func recreate(kv ...string) Delta { return Delta{Type: DeltaRecreate, Attributes: attrs(kv...)} }
func del() Delta                  { return Delta{Type: DeltaDelete} }
func modify(ch ...AttributeDelta) Delta {
	return Delta{Type: DeltaModify, Changes: ch}
}
func addV(name string, v ...string) AttributeDelta {
	return AttributeDelta{Op: AddValues, Name: name, Values: v}
}
func delV(name string, v ...string) AttributeDelta {
	return AttributeDelta{Op: DeleteValues, Name: name, Values: v}
}
func repl(name string, v ...string) AttributeDelta {
	return AttributeDelta{Op: Replace, Name: name, Values: v}
}

// attrs builds Attributes from name, value pairs ("mail", "a", "mail", "b").
func attrs(kv ...string) Attributes {
	a := Attributes{}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = append(a[kv[i]], kv[i+1])
	}
	return a
}

// canonical renders a delta with sorted value sets, for comparisons that
// ignore value order (values are sets) but not change order.
func canonical(d Delta) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", d.Type)
	if d.Attributes != nil || d.Type == DeltaAdd || d.Type == DeltaRecreate {
		n := d.Attributes.Normalize()
		for _, k := range n.Names() {
			fmt.Fprintf(&b, " %s=%q", k, n[k])
		}
	}
	for _, c := range d.Changes {
		fmt.Fprintf(&b, " %s:%s%q", c.Op, c.Name, normalizeValues(c.Values))
	}
	return b.String()
}

func TestMergeTable(t *testing.T) {
	t.Parallel()
	type want struct {
		delta       Delta
		ok          bool
		unmergeable bool
	}
	none := want{}
	bad := want{unmergeable: true}
	got := func(d Delta) want { return want{delta: d, ok: true} }
	tests := []struct {
		name   string
		deltas []Delta
		want   want
	}{
		{"nothing", nil, none},
		{"add alone", []Delta{add("uid", "a")}, got(add("uid", "a"))},
		{"modify alone", []Delta{modify(repl("mail", "x"))}, got(modify(repl("mail", "x")))},
		{"delete alone", []Delta{del()}, got(del())},
		{"recreate alone", []Delta{recreate("uid", "a")}, got(recreate("uid", "a"))},

		// Every pair of delta types.
		{"add+add", []Delta{add("uid", "a"), add("uid", "b")}, bad},
		{"add+modify", []Delta{add("uid", "a", "mail", "x"), modify(addV("mail", "y"), repl("cn", "A"))},
			got(add("uid", "a", "mail", "x", "mail", "y", "cn", "A"))},
		{"add+delete", []Delta{add("uid", "a"), del()}, none},
		{"add+recreate", []Delta{add("uid", "a", "mail", "x"), recreate("uid", "b")}, got(add("uid", "b"))},
		{"modify+add", []Delta{modify(repl("mail", "x")), add("uid", "a")}, bad},
		{"modify+modify", []Delta{modify(addV("mail", "x")), modify(addV("mail", "y"), repl("cn", "A"))},
			got(modify(addV("mail", "x", "y"), repl("cn", "A")))},
		{"modify+delete", []Delta{modify(repl("mail", "x")), del()}, got(del())},
		{"modify+recreate", []Delta{modify(repl("mail", "x")), recreate("uid", "a")}, got(recreate("uid", "a"))},
		{"delete+add", []Delta{del(), add("uid", "a")}, got(recreate("uid", "a"))},
		{"delete+modify", []Delta{del(), modify(repl("mail", "x"))}, bad},
		{"delete+delete", []Delta{del(), del()}, bad},
		{"delete+recreate", []Delta{del(), recreate("uid", "a")}, bad},
		{"recreate+add", []Delta{recreate("uid", "a"), add("uid", "a")}, bad},
		{"recreate+modify", []Delta{recreate("uid", "a", "mail", "x"), modify(delV("mail", "x"), addV("mail", "z"))},
			got(recreate("uid", "a", "mail", "z"))},
		{"recreate+delete", []Delta{recreate("uid", "a"), del()}, got(del())},
		{"recreate+recreate", []Delta{recreate("uid", "a"), recreate("uid", "b")}, got(recreate("uid", "b"))},

		// Longer sequences.
		{"add+delete+add", []Delta{add("uid", "a"), del(), add("uid", "b")}, got(add("uid", "b"))},
		{"add+delete+modify", []Delta{add("uid", "a"), del(), modify(repl("mail", "x"))}, bad},
		{"add+delete+delete", []Delta{add("uid", "a"), del(), del()}, bad},
		{"add+delete+recreate", []Delta{add("uid", "a"), del(), recreate("uid", "a")}, bad},
		{"delete+add+modify", []Delta{del(), add("uid", "a"), modify(addV("mail", "x"))}, got(recreate("uid", "a", "mail", "x"))},
		{"delete+add+delete", []Delta{del(), add("uid", "a"), del()}, got(del())},
		{"modify+delete+add", []Delta{modify(repl("mail", "x")), del(), add("uid", "a")}, got(recreate("uid", "a"))},
		{"add+modify+delete", []Delta{add("uid", "a"), modify(repl("mail", "x")), del()}, none},
		{"add+recreate+delete", []Delta{add("uid", "a"), recreate("uid", "b"), del()}, none},

		// Value add/delete cancellation and replace winning.
		{"add then delete a value", []Delta{modify(addV("mail", "x")), modify(delV("mail", "x"))},
			got(modify(delV("mail", "x")))},
		{"delete then add a value", []Delta{modify(delV("mail", "x")), modify(addV("mail", "x"))},
			got(modify(addV("mail", "x")))},
		{"adds and deletes of different values", []Delta{modify(addV("mail", "x", "y")), modify(delV("mail", "y", "z"))},
			got(modify(delV("mail", "y", "z"), addV("mail", "x")))},
		{"replace wins over earlier adds", []Delta{modify(addV("mail", "x"), delV("mail", "y")), modify(repl("mail", "z"))},
			got(modify(repl("mail", "z")))},
		{"replace then add", []Delta{modify(repl("mail", "x")), modify(addV("mail", "y"))}, got(modify(repl("mail", "x", "y")))},
		{"replace then delete", []Delta{modify(repl("mail", "x", "y")), modify(delV("mail", "x"))}, got(modify(repl("mail", "y")))},
		{"replace then delete everything", []Delta{modify(repl("mail", "x")), modify(delV("mail", "x"))}, got(modify(repl("mail")))},
		{"delete whole attribute then add", []Delta{modify(addV("mail", "x")), modify(delV("mail"), addV("mail", "y"))},
			got(modify(repl("mail", "y")))},
		{"empty replace wins", []Delta{modify(addV("mail", "x")), modify(repl("mail"))}, got(modify(repl("mail")))},
		{"attributes keep first-seen order", []Delta{modify(addV("b", "1")), modify(addV("a", "1")), modify(addV("b", "2"))},
			got(modify(addV("b", "1", "2"), addV("a", "1")))},
		{"modify that does nothing", []Delta{modify(addV("mail"))}, none},
		{"empty modify", []Delta{modify()}, none},
		{"two empty modifies", []Delta{modify(), modify()}, none},
		{"duplicate values in a replace", []Delta{modify(repl("mail", "x", "x"))}, got(modify(repl("mail", "x")))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := cloneDeltas(tc.deltas)
			d, ok, err := Merge(tc.deltas)
			if tc.want.unmergeable {
				if !errors.Is(err, ErrUnmergeable) {
					t.Fatalf("Merge = %s, %v, %v; want ErrUnmergeable", canonical(d), ok, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			if ok != tc.want.ok {
				t.Fatalf("Merge ok = %v (%s); want %v", ok, canonical(d), tc.want.ok)
			}
			if ok {
				if g, w := canonical(d), canonical(tc.want.delta); g != w {
					t.Fatalf("Merge = %s\nwant    %s", g, w)
				}
				if err := d.Validate(); err != nil {
					t.Fatalf("merged delta is invalid: %v", err)
				}
			}
			if !deltasEqual(tc.deltas, before) {
				t.Fatal("Merge modified its input")
			}
		})
	}
}

func TestMergeErrors(t *testing.T) {
	t.Parallel()
	_, _, err := Merge([]Delta{add("uid", "a"), add("uid", "a")})
	if !errors.Is(err, ErrUnmergeable) || !strings.Contains(err.Error(), "delta 1 (add) after add") {
		t.Fatalf("error %q does not say which delta", err)
	}
	_, _, err = Merge([]Delta{add("uid", "a"), {Type: 42}})
	if err == nil || errors.Is(err, ErrUnmergeable) || !strings.Contains(err.Error(), "delta 1") {
		t.Fatalf("invalid delta: %v; want a validation error naming delta 1", err)
	}
	_, _, err = Merge([]Delta{modify(AttributeDelta{Op: Replace})})
	if err == nil || errors.Is(err, ErrUnmergeable) {
		t.Fatalf("modify without an attribute name: %v", err)
	}
}

// TestMergeSharesNoMemory changes the merged delta and checks the inputs,
// and the other way round.
func TestMergeSharesNoMemory(t *testing.T) {
	t.Parallel()
	for _, in := range [][]Delta{
		{add("mail", "x", "mail", "y")},
		{add("mail", "x"), modify(addV("mail", "y"))},
		{modify(repl("mail", "x", "y"))},
		{modify(addV("mail", "x", "y"), delV("cn", "z"))},
		{del(), add("mail", "x")},
	} {
		before := cloneDeltas(in)
		d, ok, err := Merge(in)
		if err != nil || !ok {
			t.Fatalf("Merge(%v): %v %v", in, ok, err)
		}
		merged := canonical(d)
		for _, vs := range d.Attributes {
			for i := range vs {
				vs[i] = "scribbled"
			}
		}
		for _, c := range d.Changes {
			for i := range c.Values {
				c.Values[i] = "scribbled"
			}
		}
		if !deltasEqual(in, before) {
			t.Fatalf("changing the merged delta changed the input %v", in)
		}
		d2, _, _ := Merge(in)
		for _, x := range in {
			for _, vs := range x.Attributes {
				for i := range vs {
					vs[i] = "changed"
				}
			}
			for _, c := range x.Changes {
				for i := range c.Values {
					c.Values[i] = "changed"
				}
			}
		}
		if canonical(d2) != merged {
			t.Fatalf("changing the input changed the merged delta: %s; want %s", canonical(d2), merged)
		}
	}
}

func cloneDeltas(ds []Delta) []Delta {
	out := make([]Delta, len(ds))
	for i, d := range ds {
		out[i] = d.Clone()
	}
	return out
}

// deltasEqual compares exactly, value order included.
func deltasEqual(a, b []Delta) bool {
	return slices.EqualFunc(a, b, func(x, y Delta) bool {
		if x.Type != y.Type || len(x.Attributes) != len(y.Attributes) || len(x.Changes) != len(y.Changes) {
			return false
		}
		for k, v := range x.Attributes {
			if w, ok := y.Attributes[k]; !ok || !slices.Equal(v, w) {
				return false
			}
		}
		return slices.EqualFunc(x.Changes, y.Changes, func(c, d AttributeDelta) bool {
			return c.Op == d.Op && c.Name == d.Name && slices.Equal(c.Values, d.Values)
		})
	})
}

func TestApplyTable(t *testing.T) {
	t.Parallel()
	obj := attrs("uid", "a", "mail", "x", "mail", "y")
	tests := []struct {
		name       string
		attrs      Attributes
		exists     bool
		delta      Delta
		want       Attributes
		wantExists bool
		wantErr    error
	}{
		{"add", nil, false, add("uid", "a", "mail", "x", "mail", "x"), attrs("uid", "a", "mail", "x"), true, nil},
		{"add drops empty attributes", nil, false, Delta{Type: DeltaAdd, Attributes: Attributes{"uid": {"a"}, "cn": {}}}, attrs("uid", "a"), true, nil},
		{"add of an existing object", obj, true, add("uid", "a"), nil, false, ErrAlreadyExists},
		{"add ignores stale attributes of a missing object", obj, false, add("uid", "b"), attrs("uid", "b"), true, nil},
		{"modify add values", obj, true, modify(addV("mail", "y", "z")), attrs("uid", "a", "mail", "x", "mail", "y", "mail", "z"), true, nil},
		{"modify add to absent attribute", obj, true, modify(addV("cn", "A")), attrs("uid", "a", "mail", "x", "mail", "y", "cn", "A"), true, nil},
		{"modify add nothing", obj, true, modify(addV("cn")), obj, true, nil},
		{"modify delete values", obj, true, modify(delV("mail", "x", "absent")), attrs("uid", "a", "mail", "y"), true, nil},
		{"modify delete last value", obj, true, modify(delV("mail", "x", "y")), attrs("uid", "a"), true, nil},
		{"modify delete whole attribute", obj, true, modify(delV("mail")), attrs("uid", "a"), true, nil},
		{"modify delete from absent attribute", obj, true, modify(delV("cn", "A")), obj, true, nil},
		{"modify replace", obj, true, modify(repl("mail", "z", "z")), attrs("uid", "a", "mail", "z"), true, nil},
		{"modify empty replace", obj, true, modify(repl("mail")), attrs("uid", "a"), true, nil},
		{"modify in order", obj, true, modify(repl("mail", "z"), addV("mail", "w"), delV("mail", "z")), attrs("uid", "a", "mail", "w"), true, nil},
		{"modify of a missing object", nil, false, modify(repl("mail", "z")), nil, false, ErrNotFound},
		{"delete", obj, true, del(), nil, false, nil},
		{"delete of a missing object", nil, false, del(), nil, false, ErrNotFound},
		{"recreate", obj, true, recreate("uid", "b"), attrs("uid", "b"), true, nil},
		{"recreate of a missing object", nil, false, recreate("uid", "b"), nil, false, ErrNotFound},
		{"invalid delta", obj, true, Delta{Type: DeltaDelete, Attributes: attrs("uid", "a")}, nil, false, errInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := tc.attrs.Clone()
			got, exists, err := Apply(tc.attrs, tc.exists, tc.delta)
			switch {
			case tc.wantErr == errInvalid:
				if err == nil || Classify(err) != CategoryGeneric {
					t.Fatalf("Apply = %v; want a validation error", err)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Apply = %v; want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("Apply: %v", err)
			default:
				if exists != tc.wantExists {
					t.Fatalf("exists = %v; want %v", exists, tc.wantExists)
				}
				if exists && !got.Equal(tc.want) {
					t.Fatalf("Apply = %v; want %v", got, tc.want)
				}
				if !exists && len(got) != 0 {
					t.Fatalf("a missing object has attributes %v", got)
				}
			}
			if before != nil && !deltasEqual([]Delta{{Attributes: tc.attrs}}, []Delta{{Attributes: before}}) {
				t.Fatalf("Apply modified its input: %v", tc.attrs)
			}
		})
	}
}

var errInvalid = errors.New("invalid delta")

func TestApplyChanges(t *testing.T) {
	t.Parallel()
	if got := ApplyChanges(nil, nil); got == nil || len(got) != 0 {
		t.Fatalf("ApplyChanges(nil, nil) = %#v; want an empty non-nil map", got)
	}
	in := attrs("mail", "x")
	out := ApplyChanges(in, []AttributeDelta{addV("mail", "y")})
	out["mail"][0] = "scribbled"
	if in["mail"][0] != "x" || len(in["mail"]) != 1 {
		t.Fatalf("ApplyChanges shares memory with its input: %v", in)
	}
}
