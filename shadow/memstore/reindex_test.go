package memstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// TestIndexesFollowUpdates changes random indexed fields of random shadows
// and checks, after every batch, that each query's answer through the
// indexes equals a scan of every shadow: an update re-indexes only what
// changed, and must leave no index behind.
func TestIndexesFollowUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{})
	var ids []string
	for i := range 200 {
		sh := &shadow.Shadow{ResourceID: "r", Class: "account", UID: fmt.Sprintf("u%d", i), Name: fmt.Sprintf("n%d", i),
			Exists: true, Origin: shadow.OriginAssigned}
		if err := s.Create(ctx, sh); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sh.ID)
	}
	queries := []shadow.Query{
		{ResourceID: "r"}, {ResourceID: "q"}, {UID: "u3"}, {UID: "x1"}, {Name: "n5"}, {Name: "y2"},
		{Unfinished: true}, {PendingType: shadow.OpRetry}, {PendingType: shadow.OpGrouped}, {PendingType: shadow.OpAsync},
		{Dead: shadow.DeadOnly}, {Dead: shadow.DeadExclude}, {NeedsReconciliation: true},
		{DueBy: t0.Add(5 * time.Minute)}, {DueBy: t0.Add(time.Hour), ResourceID: "q"},
	}
	for round := range 40 {
		for range 50 {
			sh, err := s.Get(ctx, ids[rng.IntN(len(ids))])
			if err != nil {
				t.Fatal(err)
			}
			switch rng.IntN(7) {
			case 0:
				sh.UID = fmt.Sprintf("%c%d", "ux"[rng.IntN(2)], rng.IntN(10))
			case 1:
				sh.Name = fmt.Sprintf("%c%d", "ny"[rng.IntN(2)], rng.IntN(10))
			case 2:
				sh.ResourceID = []string{"r", "q"}[rng.IntN(2)]
			case 3:
				sh.Dead = !sh.Dead
				if sh.Dead {
					sh.DeadSince = t0
				} else {
					sh.DeadSince = time.Time{}
				}
			case 4:
				sh.NeedsReconciliation = !sh.NeedsReconciliation
			case 5:
				sh.NextDue = time.Time{}
				if rng.IntN(3) > 0 {
					sh.NextDue = t0.Add(time.Duration(rng.IntN(120)) * time.Minute)
				}
			case 6:
				if len(sh.Pending) > 0 && rng.IntN(2) == 0 {
					sh.Pending[0].Status, sh.Pending[0].Result, sh.Pending[0].CompletedAt = shadow.StatusCompleted, shadow.ResultSuccess, t0
				} else {
					sh.Pending = []shadow.PendingOperation{{ID: 1, Type: shadow.OpType(1 + rng.IntN(3)), Status: shadow.StatusRequested,
						Result: shadow.ResultInProgress, RequestedAt: t0, Delta: connector.Delta{Type: connector.DeltaModify}}}
				}
			}
			if err := s.Update(ctx, sh); err != nil && !sh.Live() {
				t.Fatal(err)
			}
		}
		for _, q := range queries {
			got, err := s.List(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			s.mu.RLock()
			for _, r := range s.byID {
				if matches(r, &q) {
					want = append(want, r.id)
				}
			}
			s.mu.RUnlock()
			slices.Sort(want)
			gotIDs := make([]string, len(got))
			for i, sh := range got {
				gotIDs[i] = sh.ID
			}
			if !slices.Equal(gotIDs, want) {
				t.Fatalf("round %d, query %+v: the indexes answer %d shadows, a full scan %d", round, q, len(gotIDs), len(want))
			}
		}
	}
}
