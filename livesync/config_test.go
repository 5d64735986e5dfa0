package livesync_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

// notSyncer is a connector without live sync.
type notSyncer struct{ connector.Connector }

// plainStore hides memstore's optional interfaces.
type plainStore struct{ shadow.Store }

// plainTokens hides the fake's fenced write.
type plainTokens struct{ livesync.TokenStore }

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := livesync.New(livesync.Config{})
	for _, field := range []string{"ResourceID", "Class", "Connector", "Store", "Tokens"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("New(Config{}) = %v, does not name %s", err, field)
		}
	}

	b := setup(t, memconn.Options{PreciseTokens: true})
	cfg := b.config()
	cfg.Connector = notSyncer{b.conn}
	cfg.BatchSize, cfg.FetchSize, cfg.Workers, cfg.GroupCommit = -1, -1, -1, -1
	cfg.DeleteGuard.MaxDeletes = -1
	cfg.ErrorPolicy.Rules = []livesync.ErrorRule{
		{Action: livesync.ActionStopAfter},
		{Action: livesync.ActionIgnore, StopAfter: 2, MaxAttempts: 3},
		{Action: livesync.ActionSetAside, MaxAttempts: -1},
		{Action: 9, ChangeTypes: []connector.ChangeType{0}, Categories: []connector.Category{99}},
	}
	cfg.Store = plainStore{b.store}
	cfg.Tokens = plainTokens{b.fake}
	cfg.Lease = &livesync.LeaseConfig{TTL: -time.Second}
	_, err = livesync.New(cfg)
	for _, want := range []string{
		"LiveSyncer", "BatchSize", "FetchSize", "Workers", "GroupCommit", "DeleteGuard.MaxDeletes",
		"Rules[0].StopAfter", "Rules[1].StopAfter", "Rules[1].MaxAttempts", "Rules[2].MaxAttempts",
		"Rules[3].Action", "Rules[3].ChangeTypes", "Rules[3].Categories",
		"Lease.Leaser", "Lease.Owner", "Lease.TTL", "FencedTokenStore",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New does not name %s: %v", want, err)
		}
	}
}

// mangler corrupts the changes of objects named "bad".
type mangler struct {
	*memconn.Conn
	mangle func(*connector.Change)
}

func (m mangler) FetchChanges(ctx context.Context, cl connector.ObjectClass, from connector.Token, max int) (connector.ChangeBatch, error) {
	b, err := m.Conn.FetchChanges(ctx, cl, from, max)
	for i := range b.Changes {
		if b.Changes[i].ID.Name == "bad" {
			m.mangle(&b.Changes[i])
		}
	}
	return b, err
}

func TestMalformedChange(t *testing.T) {
	t.Parallel()
	for name, mangle := range map[string]func(*connector.Change){
		"no type":     func(c *connector.Change) { c.Type = 0 },
		"no id":       func(c *connector.Change) { c.ID = connector.Identifiers{} },
		"wrong class": func(c *connector.Change) { c.Class = "group" },
		"no token":    func(c *connector.Change) { c.Token = "" },
	} {
		b := setup(t, memconn.Options{PreciseTokens: true})
		conn := mangler{b.conn, mangle}
		task := b.task(t, func(c *livesync.Config) { c.Connector = conn })
		mustRun(t, task)
		b.put(t, "good")
		b.put(t, "bad")
		b.put(t, "after")
		res, err := task.Run(context.Background())
		if !errors.Is(err, livesync.ErrMalformedChange) || !errors.Is(err, connector.ErrSchema) {
			t.Fatalf("%s: run: %v", name, err)
		}
		if res.TokenAfter != tok(1) || len(b.shadows(t)) != 1 {
			t.Fatalf("%s: %+v, %d shadows", name, res, len(b.shadows(t)))
		}
		ignoring := b.task(t, func(c *livesync.Config) {
			c.Connector = conn
			c.ErrorPolicy.Rules = []livesync.ErrorRule{{Categories: []connector.Category{connector.CategorySchema}, Action: livesync.ActionIgnore}}
		})
		res = mustRun(t, ignoring)
		if res.Ignored != 1 || res.Processed != 1 || res.TokenAfter != tok(3) {
			t.Fatalf("%s: ignoring run %+v", name, res)
		}
	}
}

func TestOperatorAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	var moves [][2]connector.Token
	task := b.task(t, func(c *livesync.Config) {
		c.ErrorPolicy.Rules = []livesync.ErrorRule{{Action: livesync.ActionSetAside}}
		c.Observer.TokenMoved = func(_ livesync.TokenKey, from, to connector.Token) {
			moves = append(moves, [2]connector.Token{from, to})
		}
	})
	ctx := context.Background()
	if _, found, err := task.Token(ctx); found || err != nil {
		t.Fatalf("token before the first run: found=%v err=%v", found, err)
	}
	if k := task.Key(); k != (livesync.TokenKey{ResourceID: "res", Class: class, Task: livesync.DefaultTaskName}) {
		t.Fatalf("key %v", k)
	}
	b.stream(t, 3)
	mustRun(t, task) // takes the current token: 3
	if tk, found, _ := task.Token(ctx); !found || tk != tok(3) {
		t.Fatalf("token %q found=%v", tk, found)
	}
	// Replay from the start.
	if err := task.ResetToken(ctx, tok(0)); err != nil {
		t.Fatal(err)
	}
	b.rec.setFail(failOn("o1", 1))
	if res := mustRun(t, task); res.Processed != 2 || res.SetAside != 1 {
		t.Fatalf("replay: %+v", res)
	}
	aside, err := task.SetAsideChanges(ctx)
	if err != nil || len(aside) != 1 {
		t.Fatalf("set aside %+v, %v", aside, err)
	}
	if err := task.DropSetAside(ctx, aside[0].ID); err != nil {
		t.Fatal(err)
	}
	if aside, _ = task.SetAsideChanges(ctx); len(aside) != 0 {
		t.Fatal("dropped change still set aside")
	}
	// Skip everything up to now.
	b.stream2(t, "skipped", 2)
	latest, err := task.ResetTokenToLatest(ctx)
	if err != nil || latest != tok(5) {
		t.Fatalf("reset to latest: %q, %v", latest, err)
	}
	if res := mustRun(t, task); res.Fetched != 0 {
		t.Fatalf("run after reset to latest %+v", res)
	}
	want := [][2]connector.Token{{"", "3"}, {"3", "0"}, {"0", "1"}, {"1", "2"}, {"2", "3"}, {"3", "5"}}
	if len(moves) != len(want) {
		t.Fatalf("token moves %v, want %v", moves, want)
	}
	for i := range want {
		if moves[i] != want[i] {
			t.Fatalf("token moves %v, want %v", moves, want)
		}
	}
}

func TestCancelledRunKeepsProgress(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 3} {
		b := setup(t, memconn.Options{PreciseTokens: true})
		ctx, cancel := context.WithCancel(context.Background())
		task := b.task(t, func(c *livesync.Config) {
			c.Workers = workers
			c.Handler = func(_ context.Context, ev livesync.Event) error {
				if ev.Change.ID.Name == "o4" {
					cancel()
				}
				return nil
			}
		})
		mustRun(t, task)
		b.stream(t, 50)
		res, err := task.Run(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("workers=%d: cancelled run: %v", workers, err)
		}
		if res.Failed != 0 || res.TokenAfter == tok(50) {
			t.Fatalf("workers=%d: cancelled run %+v, want no failures and a stop", workers, res)
		}
		if workers == 1 && (res.Processed != 5 || res.TokenAfter != tok(5)) {
			t.Fatalf("cancelled run kept no progress: %+v", res)
		}
		mustRun(t, task)
		b.assertMirror(t)
	}
}

// racing is a store whose first update fails with a version conflict, as
// when the consistency engine writes the same shadow at the same moment.
type racing struct {
	shadow.Store
	conflicts int
}

func (r *racing) Update(ctx context.Context, s *shadow.Shadow) error {
	if r.conflicts > 0 {
		r.conflicts--
		return shadow.ErrConflict
	}
	return r.Store.Update(ctx, s)
}

func TestStoreConflictIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	st := &racing{Store: b.store}
	task := b.task(t, func(c *livesync.Config) { c.Store = st })
	mustRun(t, task)
	ids := b.stream(t, 1)
	b.modify(t, ids[0].UID, "mail", "m")
	st.conflicts = 2
	mustRun(t, task)
	b.assertMirror(t)
	b.modify(t, ids[0].UID, "mail", "n")
	st.conflicts = 10
	if _, err := task.Run(context.Background()); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("endless conflicts: %v", err)
	}
}

// emptyLatest reports the empty token as the end of the stream.
type emptyLatest struct{ *memconn.Conn }

func (emptyLatest) LatestToken(context.Context, connector.ObjectClass) (connector.Token, error) {
	return "", nil
}

func TestFirstRunStoresEmptyToken(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, func(c *livesync.Config) { c.Connector = emptyLatest{b.conn} })
	if res := mustRun(t, task); !res.FirstRun {
		t.Fatalf("%+v", res)
	}
	if tk, found, _ := task.Token(context.Background()); !found || tk != "" {
		t.Fatalf("token %q found=%v, want the empty token stored", tk, found)
	}
	b.put(t, "a")
	if res := mustRun(t, task); res.FirstRun || res.Processed != 1 {
		t.Fatalf("second run %+v", res)
	}
}

// sloppy is a connector that ignores the max of a fetch and may drop the
// batch token.
type sloppy struct {
	*memconn.Conn
	dropToken bool
}

func (s sloppy) FetchChanges(ctx context.Context, cl connector.ObjectClass, from connector.Token, _ int) (connector.ChangeBatch, error) {
	b, err := s.Conn.FetchChanges(ctx, cl, from, 0)
	if s.dropToken {
		b.Token = ""
	}
	return b, err
}

func TestSloppyConnector(t *testing.T) {
	t.Parallel()
	// Too many changes: BatchSize still holds.
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, func(c *livesync.Config) { c.Connector = sloppy{Conn: b.conn}; c.BatchSize = 3 })
	mustRun(t, task)
	b.stream(t, 8)
	if res := mustRun(t, task); res.Processed != 3 || res.TokenAfter != tok(3) {
		t.Fatalf("run over a connector sending too much: %+v", res)
	}

	// No batch token, precise: the last change's token serves.
	task = b.task(t, func(c *livesync.Config) { c.Connector = sloppy{Conn: b.conn, dropToken: true} })
	if res := mustRun(t, task); res.Processed != 5 || res.TokenAfter != tok(8) {
		t.Fatalf("run over a connector sending no batch token: %+v", res)
	}

	// No batch token, imprecise: nowhere to resume, the run fails.
	bi := setup(t, memconn.Options{})
	task = bi.task(t, func(c *livesync.Config) { c.Connector = sloppy{Conn: bi.conn, dropToken: true} })
	mustRun(t, task)
	bi.stream(t, 2)
	if _, err := task.Run(context.Background()); !errors.Is(err, livesync.ErrMalformedChange) {
		t.Fatalf("imprecise batch without a token: %v", err)
	}
	if bi.token(t, task) != tok(0) || len(bi.rec.take()) != 0 {
		t.Fatal("a batch without a token was processed")
	}
}
