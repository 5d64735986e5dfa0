package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// identFixture stores the shadow "tmpl" and n copies, s-1000001 ... with
// UID and name-UID as name (distinct names, as objects have).
func identFixture(t *testing.T, s *Store, n int) {
	t.Helper()
	if err := s.Create(context.Background(), newShadow("tmpl")); err != nil {
		t.Fatal(err)
	}
	copyShadow(t, s, "tmpl", "s-", n)
	execSQL(t, s, `UPDATE {t}shadows SET name = 'name-' || uid WHERE id <> 'tmpl'`)
}

// TestFindByIdentifiersUsesIndexes: live sync correlates a group of changes
// with one FindByIdentifiers, on databases nobody has run ANALYZE on. The
// statement must read the uid and name indexes for the values it is given,
// not the table or the resource's shadows in ID order, whatever the mix of
// lists.
func TestFindByIdentifiersUsesIndexes(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t, connector.NewFakeClock(t0))
			// 20,000 shadows on PostgreSQL, whose planner reads a
			// small table whole; SQLite (slow under -race) plans the
			// same with 2,000.
			n := 20_000
			if d.name == "sqlite" {
				n = 2_000
			}
			if d.name == "postgres" {
				// Autovacuum must not analyze the table half-way
				// through the fixture (names not yet distinct, which
				// once made a plan walk the table): the plans are
				// checked never analyzed, then analyzed.
				execSQL(t, s, `ALTER TABLE {t}shadows SET (autovacuum_enabled = false)`)
			}
			identFixture(t, s, n)
			var uids, names []string
			for i := range 100 {
				uids = append(uids, fmt.Sprintf("s-%d", 1000001+i*7))
				names = append(names, fmt.Sprintf("name-s-%d", 1000003+i*11))
			}
			checkPlans := func(state string) {
				for _, c := range []struct {
					name        string
					uids, names []string
					want        []string
				}{
					{"both", uids, names, []string{"umbra_shadows_uid", "umbra_shadows_name"}},
					{"uids", uids, nil, []string{"umbra_shadows_uid"}},
					{"names", nil, names, []string{"umbra_shadows_name"}},
					{"one of each", uids[:1], names[:1], []string{"umbra_shadows_uid", "umbra_shadows_name"}},
				} {
					stmt, args := s.findSQL("r1", "account", c.uids, c.names)
					plan := explain(t, s, stmt, args)
					t.Logf("%s %s, %s, plan:\n%s", d.name, c.name, state, plan)
					for _, idx := range c.want {
						if !strings.Contains(plan, idx) {
							t.Errorf("%s, %s: the plan does not use %s:\n%s", c.name, state, idx, plan)
						}
					}
					if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "SCAN "+s.prefix+"shadows\n") ||
						strings.Contains(plan, "umbra_shadows_resource") {
						t.Errorf("%s, %s: the plan walks the table or the resource's shadows:\n%s", c.name, state, plan)
					}
				}
			}
			checkPlans("never analyzed")
			if d.name == "postgres" {
				execSQL(t, s, `ANALYZE {t}shadows`)
				checkPlans("analyzed")
			}
		})
	}
}

// TestFindByIdentifiersLongLists: lists longer than one statement takes are
// split, and the answer is still each shadow once in ID order; values a
// shadow cannot hold (not text, empty) match nothing instead of failing the
// lookup.
func TestFindByIdentifiersLongLists(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t, connector.NewFakeClock(t0))
			ctx := context.Background()
			const n = 3*findChunk + 10
			identFixture(t, s, n)
			var uids, names, want []string
			for i := range n {
				uid := fmt.Sprintf("s-%d", 1000001+i)
				want = append(want, uid)
				// Every shadow by UID, two thirds by name too, in
				// reverse order and with repeats.
				uids = append(uids, uid, "missing-"+uid)
				if i%3 != 0 {
					names = append(names, "name-"+uid)
				}
			}
			slices.Reverse(uids)
			names = append(names, names[:40]...)
			uids = append(uids, "", "bad\xff", "nul\x00")
			names = append(names, "", "bad\xff")
			// A dead shadow and one of another class are left out.
			execSQL(t, s, `UPDATE {t}shadows SET dead = TRUE WHERE uid = $1`, "s-1000005")
			execSQL(t, s, `UPDATE {t}shadows SET class = 'group' WHERE uid = $1`, "s-1000009")
			want = slices.DeleteFunc(want, func(u string) bool { return u == "s-1000005" || u == "s-1000009" })

			got, err := s.FindByIdentifiers(ctx, "r1", "account", uids, names)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, sh := range got {
				gotIDs = append(gotIDs, sh.ID)
			}
			if !slices.Equal(gotIDs, want) {
				t.Fatalf("found %d shadows, want %d in ID order once each; first differences: got %v, want %v",
					len(gotIDs), len(want), head(gotIDs), head(want))
			}
			if got, err := s.FindByIdentifiers(ctx, "r1", "account", nil, []string{"bad\xff"}); err != nil || len(got) != 0 {
				t.Fatalf("lookup of a value no shadow can hold: %d shadows, %v", len(got), err)
			}
			if _, err := s.FindByIdentifiers(ctx, "", "account", uids, nil); !errors.Is(err, shadow.ErrInvalid) {
				t.Fatalf("empty resource ID: %v, want ErrInvalid", err)
			}
		})
	}
}

func head(l []string) []string { return l[:min(len(l), 5)] }
