package livesync_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// TestLeaseTakeoverSQLite runs two tasks of one stream, as two processes
// would, over one SQLite database: while node A holds the lease node B
// cannot run; when A stalls past the lease's expiry, B takes over, and A,
// waking up, cannot move the token any more.
func TestLeaseTakeoverSQLite(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	ctx := context.Background()
	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "umbra.db"), sqlstore.Options{Clock: b.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	node := func(owner string, h livesync.Handler) *livesync.Task {
		return b.task(t, func(c *livesync.Config) {
			c.Store, c.Tokens, c.Handler = st, st, h
			c.Lease = &livesync.LeaseConfig{Owner: owner, TTL: time.Minute}
			c.GroupCommit = 2
		})
	}
	stalled, wake := make(chan struct{}), make(chan struct{})
	a := node("node-a", func(_ context.Context, ev livesync.Event) error {
		if ev.Change.ID.Name == "o1" {
			close(stalled)
			<-wake
		}
		return nil
	})
	bn := node("node-b", func(context.Context, livesync.Event) error { return nil })
	mustRun(t, a)
	b.stream(t, 6)

	aDone := make(chan error)
	go func() { _, err := a.Run(ctx); aDone <- err }()
	<-stalled
	if _, err := bn.Run(ctx); !errors.Is(err, shadow.ErrLeaseHeld) {
		t.Fatalf("node B ran while A held the lease: %v", err)
	}
	b.clock.Advance(2 * time.Minute)
	if res := mustRun(t, bn); res.Processed != 6 {
		t.Fatalf("node B's takeover run: %+v", res)
	}
	close(wake)
	if err := <-aDone; !errors.Is(err, shadow.ErrLeaseLost) {
		t.Fatalf("node A after losing its lease: %v", err)
	}
	if tk, _, _ := bn.Token(ctx); tk != tok(6) {
		t.Fatalf("token %q, want node B's", tk)
	}
	l, err := st.List(ctx, shadow.Query{ResourceID: "res", Class: class})
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]*shadow.Shadow{}
	for _, s := range l {
		live[s.UID] = s
	}
	assertMirror(t, live, b.conn.Objects(class))
}
