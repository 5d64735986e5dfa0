package crash_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// TestConnectionCutLiveSyncPostgres runs live sync with group commits (a
// transaction writing shadows and moving the token) against a PostgreSQL
// store reached through a proxy, and cuts the connection when the server
// has executed a group's COMMIT but before its answer comes back: the run
// fails with a store error, the stored token is never ahead of the changes
// the handler has seen, and the next runs, on the same pool, carry on to the
// end of the stream with every change delivered and the shadows mirroring
// the resource.
func TestConnectionCutLiveSyncPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy, dsn := testsvc.PostgresProxy(t, testsvc.PostgresDSN(t))
	st, err := sqlstore.OpenPostgres(ctx, dsn, sqlstore.Options{MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	res := memconn.New(memconn.Options{PreciseTokens: true})
	const objects = 40
	uids := make([]string, objects)
	for i := range objects {
		r, err := res.Add(ctx, class, connector.Attributes{"uid": {"u" + strconv.Itoa(i)}, "v": {"0"}})
		if err != nil {
			t.Fatal(err)
		}
		uids[i] = r.ID.UID
	}
	for i := range objects {
		id := connector.Identifiers{UID: uids[i], Name: "u" + strconv.Itoa(i)}
		if i%7 == 3 {
			if _, err := res.Delete(ctx, class, id); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := res.Modify(ctx, class, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "v", Values: []string{"1"}}}); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := res.LatestToken(ctx, class)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	seen := map[int]int{} // token → deliveries
	maxSeen := 0
	task, err := livesync.New(livesync.Config{
		ResourceID: resID, Class: class, Connector: res, Store: st, Tokens: st,
		StartFromBeginning: true, GroupCommit: 5, FetchSize: 20,
		Handler: func(_ context.Context, ev livesync.Event) error {
			n, err := strconv.Atoi(string(ev.Change.Token))
			if err != nil {
				return err
			}
			mu.Lock()
			seen[n]++
			maxSeen = max(maxSeen, n)
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := task.Key()

	cut := proxy.CutAnswerTo(func(b []byte) bool { return len(b) > 0 && b[0] == 'Q' && containsAll(b, "commit") })
	r, err := task.Run(ctx)
	select {
	case <-cut:
	default:
		t.Fatalf("no group commit went out in the first run (result %+v, error %v)", r, err)
	}
	var ce *connector.Error
	if err == nil || errors.As(err, &ce) {
		t.Fatalf("a run whose group commit lost its answer: error %v, want a store error", err)
	}
	if errors.Is(err, livesync.ErrTokenConflict) {
		t.Errorf("first run: %v; the run's own commit landed, no other runner moved the token", err)
	}
	t.Logf("first run: %v", err)
	stored := storedToken(t, st, key)
	mu.Lock()
	if stored > maxSeen {
		t.Errorf("stored token %d is ahead of the last change the handler saw (%d)", stored, maxSeen)
	}
	mu.Unlock()

	runs := 1
	for ; ; runs++ {
		if runs == 20 {
			t.Fatalf("the stream is not done after 20 runs (stored token %d of %s)", storedToken(t, st, key), latest)
		}
		r, err := task.Run(ctx)
		if err != nil {
			t.Logf("run %d: %v", runs+1, err)
			continue
		}
		if r.TokenAfter == latest {
			break
		}
	}
	last, _ := strconv.Atoi(string(latest))
	mu.Lock()
	repeated := 0
	for n := 1; n <= last; n++ {
		if seen[n] == 0 {
			t.Errorf("change %d never reached the handler", n)
		}
		repeated += max(0, seen[n]-1)
	}
	mu.Unlock()

	// The shadows mirror the resource.
	var objs []connector.Object
	if err := res.Search(ctx, class, connector.SearchOptions{}, func(o connector.Object) error {
		objs = append(objs, o)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	list, err := st.List(ctx, shadow.Query{ResourceID: resID, Class: class})
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]*shadow.Shadow{}
	for _, s := range list {
		if s.Live() {
			if live[s.UID] != nil {
				t.Fatalf("two live shadows of %s", s.UID)
			}
			live[s.UID] = s
		}
	}
	if len(live) != len(objs) {
		t.Errorf("%d live shadows, the resource holds %d objects", len(live), len(objs))
	}
	for _, o := range objs {
		if s := live[o.ID.UID]; s == nil || !s.Attributes.Equal(o.Attributes) {
			t.Errorf("object %s (%v): shadow %v", o.ID.Name, o.Attributes, s)
		}
	}
	t.Logf("%d changes, %d runs after the cut, %d deliveries repeated (at-least-once after a lost commit answer)", last, runs, repeated)
}

// storedToken reads the stored token as a number (0 when none).
func storedToken(t *testing.T, st *sqlstore.Store, key livesync.TokenKey) int {
	t.Helper()
	for try := 0; ; try++ { // the first read may meet the cut connection
		tok, ok, err := st.LoadToken(context.Background(), key)
		if err != nil {
			if try < 3 {
				continue
			}
			t.Fatalf("load token: %v", err)
		}
		if !ok || tok == "" {
			return 0
		}
		n, err := strconv.Atoi(string(tok))
		if err != nil {
			t.Fatal(fmt.Errorf("stored token %q: %w", tok, err))
		}
		return n
	}
}
