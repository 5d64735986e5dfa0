package sqlstore

import (
	"context"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// TestIdentifierLookupUsesItsIndex: live sync and discovery look shadows up
// by UID or Name within a resource and class, on databases nobody has run
// ANALYZE on. The lookup must read the identifier's index, not walk every
// shadow of the resource in ID order (which SQLite's planner chose for
// ORDER BY id LIMIT n, making each lookup cost the whole resource).
func TestIdentifierLookupUsesItsIndex(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t, connector.NewFakeClock(t0))
			if err := s.Create(context.Background(), newShadow("tmpl")); err != nil {
				t.Fatal(err)
			}
			copyShadow(t, s, "tmpl", "s-", 2000)
			for _, q := range []shadow.Query{
				{ResourceID: "r1", Class: "account", UID: "s-1000007", Dead: shadow.DeadExclude, Limit: 2},
				{ResourceID: "r1", Class: "account", Name: "name-tmpl", Dead: shadow.DeadExclude, Limit: 2},
			} {
				stmt, args, err := s.listSQL(q)
				if err != nil {
					t.Fatal(err)
				}
				plan := explain(t, s, stmt, args)
				want := "umbra_shadows_uid"
				if q.Name != "" {
					want = "umbra_shadows_name"
				}
				if !strings.Contains(plan, want) {
					t.Errorf("lookup %+v does not use %s:\n%s", q, want, plan)
				}
			}
		})
	}
}
