package shadow_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// listStore is a Store whose List serves pages of a fixed ID list and
// records the queries it got; failAt makes the n-th List call (1-based)
// fail.
type listStore struct {
	shadow.Store // nil: only List is called
	ids          []string
	queries      []shadow.Query
	failAt       int
}

var errList = errors.New("list failed")

func (s *listStore) List(_ context.Context, q shadow.Query) ([]*shadow.Shadow, error) {
	s.queries = append(s.queries, q)
	if len(s.queries) == s.failAt {
		return nil, errList
	}
	var out []*shadow.Shadow
	for _, id := range s.ids {
		if id > q.After && (q.Limit == 0 || len(out) < q.Limit) {
			out = append(out, &shadow.Shadow{ID: id})
		}
	}
	return out, nil
}

func collect(t *testing.T, seq func(func(*shadow.Shadow, error) bool)) ([]string, error) {
	t.Helper()
	var got []string
	for sh, err := range seq {
		if err != nil {
			return got, err
		}
		got = append(got, sh.ID)
	}
	return got, nil
}

func TestAllPages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tests := []struct {
		n, pageSize int
		wantCalls   int
	}{
		{0, 3, 1},
		{2, 3, 1},
		{3, 3, 2}, // a full last page needs one more (empty) page to know it is the last
		{7, 3, 3},
		{9, 3, 4},
		{5, 0, 1}, // default page size
	}
	for _, tc := range tests {
		var ids []string
		for i := range tc.n {
			ids = append(ids, fmt.Sprintf("id%02d", i))
		}
		s := &listStore{ids: ids}
		q := shadow.Query{ResourceID: "r1", After: "a", Limit: 99}
		got, err := collect(t, shadow.All(ctx, s, q, tc.pageSize))
		if err != nil {
			t.Fatalf("n=%d page=%d: %v", tc.n, tc.pageSize, err)
		}
		if !cmp.Equal(got, ids) {
			t.Fatalf("n=%d page=%d: All yielded %v, want %v", tc.n, tc.pageSize, got, ids)
		}
		if len(s.queries) != tc.wantCalls {
			t.Fatalf("n=%d page=%d: %d List calls, want %d", tc.n, tc.pageSize, len(s.queries), tc.wantCalls)
		}
		wantSize := tc.pageSize
		if wantSize == 0 {
			wantSize = 500
		}
		for i, q := range s.queries {
			if q.ResourceID != "r1" || q.Limit != wantSize {
				t.Fatalf("List call %d got %+v: want the caller's filter with Limit %d", i, q, wantSize)
			}
			wantAfter := "a" // the caller's After is where iteration starts
			if i > 0 {
				wantAfter = ids[i*wantSize-1]
			}
			if q.After != wantAfter {
				t.Fatalf("List call %d After %q, want %q", i, q.After, wantAfter)
			}
		}
	}
}

func TestAllError(t *testing.T) {
	t.Parallel()
	s := &listStore{ids: []string{"a", "b", "c", "d", "e"}, failAt: 2}
	got, err := collect(t, shadow.All(t.Context(), s, shadow.Query{}, 2))
	if !errors.Is(err, errList) {
		t.Fatalf("All error = %v, want the List error", err)
	}
	if !cmp.Equal(got, []string{"a", "b"}) {
		t.Fatalf("All yielded %v before the error, want [a b]", got)
	}
	// After yielding the error, the iteration ends.
	n := 0
	for range shadow.All(t.Context(), &listStore{failAt: 1}, shadow.Query{}, 2) {
		n++
	}
	if n != 1 {
		t.Fatalf("All yielded %d times for a failing first page, want 1 (the error)", n)
	}
}

func TestAllBreak(t *testing.T) {
	t.Parallel()
	s := &listStore{ids: []string{"a", "b", "c", "d", "e"}}
	var got []string
	for sh, err := range shadow.All(t.Context(), s, shadow.Query{}, 2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, sh.ID)
		if sh.ID == "c" {
			break
		}
	}
	if !cmp.Equal(got, []string{"a", "b", "c"}) || len(s.queries) != 2 {
		t.Fatalf("All after break: yielded %v with %d List calls; want [a b c] with 2", got, len(s.queries))
	}
}

func TestFindLive(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := memstore.New(memstore.Options{})
	mk := func(id, res string, class connector.ObjectClass, uid, name string, exists, dead bool) {
		t.Helper()
		sh := &shadow.Shadow{ID: id, ResourceID: res, Class: class, UID: uid, Name: name, Exists: exists, Dead: dead, Origin: shadow.OriginAssigned}
		if err := s.Create(ctx, sh); err != nil {
			t.Fatalf("Create(%s): %v", id, err)
		}
	}
	mk("a-dead", "r1", "acct", "u1", "n1", true, true)
	mk("b-live", "r1", "acct", "u1", "n1", true, false)
	mk("c-other-res", "r2", "acct", "u1", "n1", true, false)
	mk("d-other-class", "r1", "group", "u1", "n1", true, false)
	mk("e-proposed", "r1", "acct", "", "n2", false, false)
	mk("f-dead-only", "r1", "acct", "u3", "n3", true, true)
	mk("g-not-existing", "r1", "acct", "u4", "n4", false, false)

	tests := []struct {
		name string
		id   connector.Identifiers
		want string // "" for none
	}{
		{"by UID skips the dead one", connector.Identifiers{UID: "u1"}, "b-live"},
		{"UID wins over Name", connector.Identifiers{UID: "u1", Name: "n3"}, "b-live"},
		{"by Name", connector.Identifiers{Name: "n1"}, "b-live"},
		{"by Name finds a proposed shadow", connector.Identifiers{Name: "n2"}, "e-proposed"},
		{"only dead", connector.Identifiers{UID: "u3"}, ""},
		{"only dead by Name", connector.Identifiers{Name: "n3"}, ""},
		{"by UID needs Exists", connector.Identifiers{UID: "u4"}, ""},
		{"unknown", connector.Identifiers{UID: "zz"}, ""},
		{"no identifiers", connector.Identifiers{}, ""},
	}
	for _, tc := range tests {
		got, err := shadow.FindLive(ctx, s, "r1", "acct", tc.id)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		gotID := ""
		if got != nil {
			gotID = got.ID
		}
		if gotID != tc.want {
			t.Errorf("%s: FindLive(%+v) = %q, want %q", tc.name, tc.id, gotID, tc.want)
		}
	}
	if got, _ := shadow.FindLive(ctx, s, "r2", "acct", connector.Identifiers{UID: "u1"}); got == nil || got.ID != "c-other-res" {
		t.Errorf("FindLive in r2 = %v, want c-other-res", got)
	}

	if _, err := shadow.FindLive(ctx, &listStore{failAt: 1}, "r1", "acct", connector.Identifiers{UID: "u1"}); !errors.Is(err, errList) {
		t.Fatalf("FindLive with a failing store: error %v, want the List error", err)
	}
}
