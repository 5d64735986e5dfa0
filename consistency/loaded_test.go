package consistency_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/shadow"
)

// countingStore counts Get calls.
type countingStore struct {
	shadow.Store
	gets atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, id string) (*shadow.Shadow, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

// postponedModify returns b with one shadow whose modify, postponed by an
// outage, is due for a retry.
func postponedModify(t *testing.T, b *bundle) string {
	t.Helper()
	sh := b.live(t, "alice")
	b.conn.Down()
	b.modify(t, sh.ID, replace("mail", "alice@example.com"))
	b.conn.Up()
	b.clock.Advance(time.Hour)
	return sh.ID
}

func TestRefreshLoadedUsesTheCopyWithoutARead(t *testing.T) {
	t.Parallel()
	var cs *countingStore
	b := setup(t, setupOpts{wrapStore: func(st shadow.Store) shadow.Store { cs = &countingStore{Store: st}; return cs }})
	id := postponedModify(t, b)
	loaded, err := b.store.Get(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	before, calls := cs.gets.Load(), b.conn.Calls(memconn.CallModify)
	res, err := b.eng.RefreshLoaded(b.ctx, loaded)
	if err != nil || res.Completed != 1 {
		t.Fatalf("RefreshLoaded = %+v, %v; want the retry completed", res, err)
	}
	if n := cs.gets.Load() - before; n != 0 {
		t.Errorf("RefreshLoaded read the store %d times, want 0 for a current copy", n)
	}
	if got := b.conn.Calls(memconn.CallModify) - calls; got != 1 {
		t.Errorf("%d modify calls, want 1", got)
	}
}

// A copy read before another refresh completed the retry must not make the
// call again: its first write meets the newer version, and the refresh
// starts over from the stored shadow, which has nothing left to do.
func TestRefreshLoadedStaleCopyDoesNotRepeatTheCall(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	id := postponedModify(t, b)
	stale, err := b.store.Get(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b.eng.RefreshShadow(b.ctx, id); err != nil || res.Completed != 1 {
		t.Fatalf("RefreshShadow = %+v, %v", res, err)
	}
	// Queue another change behind the completed one while the copy is
	// stale: the restarted refresh must keep it.
	b.conn.Down()
	b.modify(t, id, replace("mail", "alice@new.example.com"))
	b.conn.Up()
	calls := b.conn.Calls(memconn.CallModify)
	res, err := b.eng.RefreshLoaded(b.ctx, stale)
	if err != nil {
		t.Fatalf("RefreshLoaded(stale): %v", err)
	}
	if got := b.conn.Calls(memconn.CallModify) - calls; got != 0 {
		t.Errorf("the stale refresh made %d modify calls, want 0", got)
	}
	if res.Completed != 0 || res.StillPending != 1 {
		t.Errorf("RefreshLoaded(stale) = %+v, want nothing completed and the new change still pending", res)
	}
	stored, err := b.store.Get(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	unfinished := 0
	for _, op := range stored.Pending {
		if !op.Completed() {
			unfinished++
		}
	}
	if unfinished != 1 {
		t.Errorf("stored shadow has %d unfinished operations, want the queued change: %+v", unfinished, stored.Pending)
	}
}

func TestRefreshLoadedRefusesNoShadow(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	if _, err := b.eng.RefreshLoaded(b.ctx, nil); err == nil {
		t.Error("RefreshLoaded(nil) succeeded")
	}
	if _, err := b.eng.RefreshLoaded(b.ctx, &shadow.Shadow{}); err == nil {
		t.Error("RefreshLoaded of a shadow without ID succeeded")
	}
}
