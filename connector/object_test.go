package connector

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAttributesClone(t *testing.T) {
	t.Parallel()
	if Attributes(nil).Clone() != nil {
		t.Fatal("Clone of nil is not nil")
	}
	a := attrs("mail", "x", "mail", "y", "cn", "A")
	c := a.Clone()
	c["mail"][0] = "scribbled"
	c["new"] = []string{"v"}
	if a["mail"][0] != "x" || a["new"] != nil {
		t.Fatalf("Clone shares memory: %v", a)
	}
	if !c.Equal(attrs("mail", "scribbled", "mail", "y", "cn", "A", "new", "v")) {
		t.Fatalf("clone = %v", c)
	}
	e := Attributes{}.Clone()
	if e == nil || len(e) != 0 {
		t.Fatalf("Clone of empty = %#v", e)
	}
}

func TestAttributesGet(t *testing.T) {
	t.Parallel()
	a := Attributes{"mail": {"x", "y"}, "empty": {}}
	for _, tc := range []struct{ name, want string }{{"mail", "x"}, {"empty", ""}, {"absent", ""}} {
		if got := a.Get(tc.name); got != tc.want {
			t.Errorf("Get(%q) = %q; want %q", tc.name, got, tc.want)
		}
	}
	if Attributes(nil).Get("x") != "" {
		t.Error("Get on nil")
	}
}

func TestAttributesEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b Attributes
		want bool
	}{
		{nil, nil, true},
		{nil, Attributes{}, true},
		{attrs("m", "x"), attrs("m", "x"), true},
		{attrs("m", "x", "m", "y"), attrs("m", "y", "m", "x"), true},
		{attrs("m", "x", "m", "x"), attrs("m", "x"), true},
		{Attributes{"m": {}}, nil, true},
		{Attributes{"m": nil}, Attributes{"n": {}}, true},
		{attrs("m", "x"), attrs("m", "y"), false},
		{attrs("m", "x"), attrs("n", "x"), false},
		{attrs("m", "x"), nil, false},
		{nil, attrs("m", "x"), false},
		{attrs("m", "x", "m", "y"), attrs("m", "x"), false},
		{attrs("m", "x", "m", "y"), attrs("m", "x", "m", "x"), false},
		{attrs("m", "x", "n", "y"), attrs("m", "x"), false},
		{Attributes{"m": {""}}, Attributes{"m": {}}, false},
	}
	for _, tc := range tests {
		if got := tc.a.Equal(tc.b); got != tc.want {
			t.Errorf("%v.Equal(%v) = %v; want %v", tc.a, tc.b, got, tc.want)
		}
		if got := tc.b.Equal(tc.a); got != tc.want {
			t.Errorf("%v.Equal(%v) = %v; want %v (symmetry)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestAttributesNormalizeNames(t *testing.T) {
	t.Parallel()
	a := Attributes{"b": {"z", "x", "z"}, "a": {"y"}, "empty": {}, "nil": nil}
	n := a.Normalize()
	if len(n) != 2 || !slices.Equal(n["b"], []string{"x", "z"}) || !slices.Equal(n["a"], []string{"y"}) {
		t.Fatalf("Normalize = %v", n)
	}
	n["b"][0] = "scribbled"
	if a["b"][1] != "x" {
		t.Fatal("Normalize shares memory with its input")
	}
	if got := a.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Names = %q", got)
	}
	if got := Attributes(nil).Names(); len(got) != 0 {
		t.Fatalf("Names of nil = %q", got)
	}
	if got := Attributes(nil).Normalize(); got == nil || len(got) != 0 {
		t.Fatalf("Normalize of nil = %#v", got)
	}
}

func TestAttributesDiff(t *testing.T) {
	t.Parallel()
	a := attrs("same", "1", "changed", "x", "gone", "g", "order", "p", "order", "q")
	b := attrs("same", "1", "changed", "y", "changed", "x", "new", "n", "order", "q", "order", "p")
	got := a.Diff(b)
	want := []AttributeDelta{repl("changed", "x", "y"), repl("gone"), repl("new", "n")}
	if canonical(Delta{Type: DeltaModify, Changes: got}) != canonical(Delta{Type: DeltaModify, Changes: want}) {
		t.Fatalf("Diff = %v; want %v", got, want)
	}
	if !ApplyChanges(a, got).Equal(b) {
		t.Fatalf("applying the diff does not give b")
	}
	if d := a.Diff(a.Clone()); len(d) != 0 {
		t.Fatalf("Diff of equal = %v", d)
	}
	if d := Attributes(nil).Diff(nil); len(d) != 0 {
		t.Fatalf("Diff of nils = %v", d)
	}
}

func TestIdentifiersAndObject(t *testing.T) {
	t.Parallel()
	if !(Identifiers{}).IsZero() || (Identifiers{UID: "u"}).IsZero() || (Identifiers{Name: "n"}).IsZero() {
		t.Fatal("IsZero is wrong")
	}
	o := Object{Class: "account", ID: Identifiers{UID: "u"}, Attributes: attrs("m", "x")}
	c := o.Clone()
	c.Attributes["m"][0] = "scribbled"
	if o.Attributes["m"][0] != "x" || c.ID != o.ID || c.Class != o.Class {
		t.Fatalf("Object.Clone: %+v / %+v", o, c)
	}
}

func TestDeltaValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		d       Delta
		wantErr string // "" for valid
	}{
		{"add", add("uid", "a"), ""},
		{"add without attributes", Delta{Type: DeltaAdd}, ""},
		{"add with changes", Delta{Type: DeltaAdd, Changes: []AttributeDelta{repl("m", "x")}}, "carries attribute changes"},
		{"add with a nameless attribute", Delta{Type: DeltaAdd, Attributes: Attributes{"": {"x"}}}, "empty name"},
		{"recreate", recreate("uid", "a"), ""},
		{"recreate with changes", Delta{Type: DeltaRecreate, Changes: []AttributeDelta{repl("m")}}, "recreate delta carries"},
		{"modify", modify(addV("m", "x"), delV("m"), repl("n")), ""},
		{"empty modify", modify(), ""},
		{"modify with attributes", Delta{Type: DeltaModify, Attributes: attrs("m", "x")}, "carries attributes"},
		{"modify without a name", modify(repl("m"), AttributeDelta{Op: AddValues}), "change 1 has an empty attribute name"},
		{"modify with op 0", modify(AttributeDelta{Name: "m"}), `change 0 ("m") has unknown operation 0`},
		{"modify with op 4", modify(AttributeDelta{Op: 4, Name: "m"}), "unknown operation 4"},
		{"delete", del(), ""},
		{"delete with attributes", Delta{Type: DeltaDelete, Attributes: attrs("m", "x")}, "delete delta carries"},
		{"delete with changes", Delta{Type: DeltaDelete, Changes: []AttributeDelta{repl("m")}}, "delete delta carries"},
		{"type 0", Delta{}, "unknown delta type 0"},
		{"type 5", Delta{Type: 5}, "unknown delta type 5"},
	}
	for _, tc := range tests {
		err := tc.d.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: Validate = %v; want nil", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Validate = %v; want an error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestDeltaClone(t *testing.T) {
	t.Parallel()
	d := Delta{Type: DeltaModify, Changes: []AttributeDelta{addV("m", "x")}}
	c := d.Clone()
	c.Changes[0].Values[0] = "scribbled"
	c.Changes[0].Name = "other"
	if d.Changes[0].Values[0] != "x" || d.Changes[0].Name != "m" {
		t.Fatal("Delta.Clone shares changes")
	}
	a := add("m", "x")
	ac := a.Clone()
	ac.Attributes["m"][0] = "scribbled"
	if a.Attributes["m"][0] != "x" {
		t.Fatal("Delta.Clone shares attributes")
	}
	if z := (Delta{Type: DeltaDelete}).Clone(); z.Changes != nil || z.Attributes != nil {
		t.Fatalf("Clone of an empty delta = %+v", z)
	}
}

func TestChangeValidate(t *testing.T) {
	t.Parallel()
	ok := Change{Type: ChangeCreate, Class: "account", ID: Identifiers{UID: "u"}}
	tests := []struct {
		name    string
		c       Change
		wantErr string
	}{
		{"create", ok, ""},
		{"by name only", Change{Type: ChangeModify, Class: "account", ID: Identifiers{Name: "n"}}, ""},
		{"delete", Change{Type: ChangeDelete, Class: "account", ID: Identifiers{UID: "u"}}, ""},
		{"create-or-modify", Change{Type: ChangeCreateOrModify, Class: "account", ID: Identifiers{UID: "u"}}, ""},
		{"type 0", Change{Class: "account", ID: Identifiers{UID: "u"}}, "unknown type 0"},
		{"type 5", Change{Type: 5, Class: "account", ID: Identifiers{UID: "u"}}, "unknown type 5"},
		{"no class", Change{Type: ChangeDelete, ID: Identifiers{UID: "u"}}, "delete change has no object class"},
		{"no identifier", Change{Type: ChangeModify, Class: "account"}, `modify change of class "account" has no identifier`},
	}
	for _, tc := range tests {
		err := tc.c.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: Validate = %v; want nil", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Validate = %v; want an error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, want string
	}{
		{AddValues.String(), "add"}, {DeleteValues.String(), "delete"}, {Replace.String(), "replace"}, {ModOp(9).String(), "ModOp(9)"},
		{DeltaAdd.String(), "add"}, {DeltaModify.String(), "modify"}, {DeltaDelete.String(), "delete"},
		{DeltaRecreate.String(), "recreate"}, {DeltaType(9).String(), "DeltaType(9)"},
		{ChangeCreate.String(), "create"}, {ChangeModify.String(), "modify"}, {ChangeDelete.String(), "delete"},
		{ChangeCreateOrModify.String(), "create-or-modify"}, {ChangeType(9).String(), "ChangeType(9)"},
		{AsyncInProgress.String(), "in progress"}, {AsyncDone.String(), "done"}, {AsyncFailed.String(), "failed"},
		{AsyncState(9).String(), "AsyncState(9)"},
		{mergeCancelled.String(), "add+delete"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q; want %q", tc.got, tc.want)
		}
	}
}

func TestClockAliases(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var c Clock = NewFakeClock(at)
	if !c.Now().Equal(at) {
		t.Fatalf("fake Now = %v", c.Now())
	}
	ch := c.After(time.Minute)
	c.(*FakeClock).Advance(time.Minute)
	select {
	case got := <-ch:
		if !got.Equal(at.Add(time.Minute)) {
			t.Fatalf("After fired at %v", got)
		}
	default:
		t.Fatal("After did not fire when the fake time passed it")
	}
	var r Clock = RealClock{}
	if time.Since(r.Now()) > time.Minute {
		t.Fatal("RealClock is not the wall clock")
	}
}
