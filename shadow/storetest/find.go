package storetest

import (
	"slices"

	"github.com/google/go-cmp/cmp"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

func findCases() []testCase {
	return []testCase{
		{name: "FindByIdentifiers", run: testFindByIdentifiers},
	}
}

// testFindByIdentifiers checks shadow.IdentifierFinder, when the store has
// it, against the query fixture: only shadows of the resource and class that
// are not dead, the union of the UID and Name matches, each once, in ID
// order, copies the caller owns.
func testFindByIdentifiers(h *harness) {
	f, ok := h.s.(shadow.IdentifierFinder)
	if !ok {
		h.t.Skipf("%T does not implement shadow.IdentifierFinder", h.s)
	}
	queryFixture(h)
	// Not dead but not existing: found by its UID too.
	h.create(&shadow.Shadow{ID: "q11", ResourceID: "r1", Class: "acct", UID: "u11", Name: "n11", Origin: shadow.OriginAssigned})

	tests := []struct {
		name        string
		res         string
		class       connector.ObjectClass
		uids, names []string
		want        []string
	}{
		{"UID: dead and other resource left out", "r1", "acct", []string{"u1"}, nil, []string{"q01"}},
		{"UID of a shadow that does not exist", "r1", "acct", []string{"u11"}, nil, []string{"q11"}},
		{"Name: dead left out", "r1", "acct", nil, []string{"n2"}, []string{"q07"}},
		{"Name of a shadow without UID", "r1", "acct", nil, []string{"n5"}, []string{"q05"}},
		{"found by UID and Name, once", "r1", "acct", []string{"u2"}, []string{"n2"}, []string{"q07"}},
		{"union in ID order", "r1", "acct", []string{"u9", "u1"}, []string{"n5", "n11"}, []string{"q01", "q05", "q09", "q11"}},
		{"repeated values", "r1", "acct", []string{"u9", "u9", "u1"}, []string{"n1", "n9", "n1"}, []string{"q01", "q09"}},
		{"UID of one, Name of another", "r1", "acct", []string{"u1"}, []string{"n9"}, []string{"q01", "q09"}},
		{"other resource", "r2", "acct", []string{"u1", "u3"}, []string{"n1"}, []string{"q04"}},
		{"other class left out", "r1", "acct", []string{"g1"}, []string{"grp1"}, nil},
		{"class", "r1", "group", []string{"g1", "u1"}, []string{"n1"}, []string{"q03"}},
		{"UID is not matched as Name", "r1", "acct", []string{"n1"}, []string{"u1"}, nil},
		{"unknown", "r1", "acct", []string{"zz"}, []string{"zz"}, nil},
		{"empty values match nothing", "r1", "acct", []string{""}, []string{""}, nil},
		{"empty lists", "r1", "acct", []string{}, []string{}, nil},
		{"nil lists", "r1", "acct", nil, nil, nil},
	}
	for _, tc := range tests {
		uids, names := slices.Clone(tc.uids), slices.Clone(tc.names)
		got, err := f.FindByIdentifiers(h.ctx, tc.res, tc.class, uids, names)
		if err != nil {
			h.t.Errorf("%s: FindByIdentifiers(%s, %s, %q, %q): %v", tc.name, tc.res, tc.class, tc.uids, tc.names, err)
			continue
		}
		if !cmp.Equal(ids(got), tc.want, Compare) {
			h.t.Errorf("%s: FindByIdentifiers(%s, %s, %q, %q) = %v, want %v", tc.name, tc.res, tc.class, tc.uids, tc.names, ids(got), tc.want)
		}
		for _, sh := range got {
			mustEqual(h.t, tc.name+": found "+sh.ID, sh, h.get(sh.ID))
		}
		if !slices.Equal(uids, tc.uids) || !slices.Equal(names, tc.names) {
			h.t.Errorf("%s: FindByIdentifiers changed its arguments to %q, %q", tc.name, uids, names)
		}
	}

	// The shadows are the caller's.
	got, err := f.FindByIdentifiers(h.ctx, "r1", "acct", []string{"u1"}, nil)
	if err != nil || len(got) != 1 {
		h.t.Fatalf("FindByIdentifiers u1: %d shadows, %v", len(got), err)
	}
	before := h.snapshot("q01")
	got[0].Name, got[0].Attributes = "changed", connector.Attributes{"x": {"y"}}
	mustEqual(h.t, "q01 after its found copy was modified", h.get("q01"), before)

	for _, bad := range []struct {
		res   string
		class connector.ObjectClass
	}{{"", "acct"}, {"r1", ""}} {
		_, err := f.FindByIdentifiers(h.ctx, bad.res, bad.class, []string{"u1"}, []string{"n1"})
		wantErr(h.t, "FindByIdentifiers with resource "+bad.res+" and class "+string(bad.class), err, shadow.ErrInvalid)
	}
	_, err = f.FindByIdentifiers(h.cancelled(), "r1", "acct", []string{"u1"}, nil)
	wantCancelled(h.t, "FindByIdentifiers", err)
}
