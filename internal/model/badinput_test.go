package model_test

// Bad input, engine by engine: every invalid setting is refused at
// construction with an error naming the field and its value; invalid
// operations and malformed change events are refused with an error naming
// the record, and nothing is written, no token moved.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/compensation"
	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// wantAll fails unless err is set and mentions every string of want.
func wantAll(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one naming %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

func TestBadInputConsistencyNew(t *testing.T) {
	t.Parallel()
	conn := memconn.New(memconn.Options{})
	st := memstore.New(memstore.Options{})
	with := func(f func(*consistency.Settings)) *consistency.Settings {
		s := consistency.DefaultSettings()
		f(&s)
		return &s
	}
	res := func(s *consistency.Settings) []consistency.Resource {
		return []consistency.Resource{{ID: "r", Connector: conn, Settings: s}}
	}
	for _, c := range []struct {
		name string
		cfg  consistency.Config
		want []string
	}{
		{"nil store", consistency.Config{Resources: res(nil)}, []string{"Store is nil"}},
		{"no resources", consistency.Config{Store: st}, []string{"Resources is empty"}},
		{"resource without ID", consistency.Config{Store: st, Resources: []consistency.Resource{{Connector: conn}}}, []string{"Resources[0].ID is empty"}},
		{"resource without connector", consistency.Config{Store: st, Resources: []consistency.Resource{{ID: "r"}}}, []string{`Resources[0] ("r").Connector is nil`}},
		{"repeated ID", consistency.Config{Store: st, Resources: []consistency.Resource{{ID: "r", Connector: conn}, {ID: "r", Connector: conn}}}, []string{`Resources[1].ID "r" repeats`}},
		{"negative retention", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.PendingOperationRetentionPeriod = -time.Second }))},
			[]string{"PendingOperationRetentionPeriod = -1s", "negative"}},
		{"negative dead retention", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.DeadShadowRetentionPeriod = -time.Hour }))},
			[]string{"DeadShadowRetentionPeriod = -1h0m0s"}},
		{"negative grouping", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.OperationGroupingInterval = -time.Minute }))},
			[]string{"OperationGroupingInterval = -1m0s"}},
		{"negative grace", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.PendingOperationGracePeriod = -1 }))},
			[]string{"PendingOperationGracePeriod = -1ns"}},
		{"negative probe interval", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.ProbeInterval = -time.Second }))},
			[]string{"ProbeInterval = -1s"}},
		{"zero retry period", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.OperationRetryPeriod = 0 }))},
			[]string{"OperationRetryPeriod = 0s", "positive"}},
		{"negative attempts", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.OperationRetryMaxAttempts = -1 }))},
			[]string{"OperationRetryMaxAttempts = -1"}},
		{"quarantine share above one", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) {
			s.Quarantine = &consistency.QuarantinePolicy{FailureShare: 1.5}
		}))}, []string{"Quarantine.FailureShare = 1.5"}},
		{"empty quarantine", consistency.Config{Store: st, Resources: res(with(func(s *consistency.Settings) { s.Quarantine = &consistency.QuarantinePolicy{} }))},
			[]string{"Quarantine", "FailureShare or MaxFailures"}},
		{"every problem at once", consistency.Config{Resources: res(with(func(s *consistency.Settings) {
			s.OperationRetryPeriod, s.ProbeInterval = -time.Minute, -time.Minute
		}))}, []string{"Store is nil", "OperationRetryPeriod = -1m0s", "ProbeInterval = -1m0s", `Resources[0] ("r").Settings`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			eng, err := consistency.New(c.cfg)
			wantAll(t, err, c.want...)
			if eng != nil {
				t.Error("an engine came back with the error")
			}
		})
	}
	if n, _ := st.Count(context.Background(), shadow.Query{}); n != 0 {
		t.Errorf("%d shadows written by refused configurations", n)
	}
}

// TestBadInputConsistencyOperations: operations the engine must refuse
// before anything is stored or sent.
func TestBadInputConsistencyOperations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, nil)
	out, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: class, Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := out.Shadow.ID
	before, _ := f.st.Get(ctx, id)
	f.conn.ResetCalls()
	for _, c := range []struct {
		name string
		do   func() error
		want []string
	}{
		{"add to an unknown resource", func() error {
			_, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "nope", Class: class, Attributes: connector.Attributes{"uid": {"bob"}}})
			if !errors.Is(err, consistency.ErrUnknownResource) {
				t.Errorf("error %v is not ErrUnknownResource", err)
			}
			return err
		}, []string{`"nope"`}},
		{"add without class", func() error {
			_, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Attributes: connector.Attributes{"uid": {"bob"}}})
			return err
		}, []string{"Class is empty"}},
		{"modify with an unnamed attribute", func() error {
			_, err := f.eng.Modify(ctx, id, []connector.AttributeDelta{{Op: connector.Replace, Values: []string{"x"}}})
			return err
		}, []string{id}},
		{"modify with an unknown operation", func() error {
			_, err := f.eng.Modify(ctx, id, []connector.AttributeDelta{{Op: 42, Name: "mail", Values: []string{"x"}}})
			return err
		}, []string{id}},
		{"modify of an unknown shadow", func() error {
			_, err := f.eng.Modify(ctx, "no-such-shadow", []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"x"}}})
			if !errors.Is(err, shadow.ErrNotFound) {
				t.Errorf("error %v is not shadow.ErrNotFound", err)
			}
			return err
		}, []string{"no-such-shadow"}},
		{"status of an unknown resource", func() error {
			_, err := f.eng.Status("nope")
			return err
		}, []string{`"nope"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantAll(t, c.do(), c.want...)
		})
	}
	if n, _ := f.st.Count(ctx, shadow.Query{}); n != 1 {
		t.Errorf("%d shadows after refused operations, want the one added", n)
	}
	if after, _ := f.st.Get(ctx, id); after.Version != before.Version {
		t.Errorf("shadow %s written by a refused operation (version %d → %d)", id, before.Version, after.Version)
	}
	for k, n := range f.conn.CallCounts() {
		if n > 0 {
			t.Errorf("%d %s calls by refused operations", n, k)
		}
	}
}

func TestBadInputTasks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	for _, c := range []struct {
		name string
		new  func() error
		want []string
	}{
		{"refresh: nil engine", func() error { _, err := refresh.New(refresh.Config{}); return err }, []string{"Engine is nil"}},
		{"refresh: negative concurrency", func() error {
			_, err := refresh.New(refresh.Config{Engine: f.eng, Concurrency: -2})
			return err
		}, []string{"Concurrency = -2"}},
		{"refresh: negative page size", func() error {
			_, err := refresh.New(refresh.Config{Engine: f.eng, PageSize: -1})
			return err
		}, []string{"PageSize = -1"}},
		{"refresh: claim TTL without owner", func() error {
			_, err := refresh.New(refresh.Config{Engine: f.eng, ClaimTTL: time.Minute})
			return err
		}, []string{"ClaimTTL = 1m0s", "Owner"}},
		{"refresh: unknown resource", func() error {
			_, err := refresh.New(refresh.Config{Engine: f.eng, Selection: refresh.Selection{ResourceIDs: []string{"r", "nope"}}})
			return err
		}, []string{`Selection.ResourceIDs[1] = "nope"`}},
		{"refresh: unknown mode", func() error {
			_, err := refresh.New(refresh.Config{Engine: f.eng, Selection: refresh.Selection{Mode: 9}})
			return err
		}, []string{"Selection.Mode = 9"}},
		{"propagation: nil engine", func() error { _, err := propagation.New(propagation.Config{}); return err }, []string{"Engine is nil"}},
		{"propagation: unknown resource", func() error {
			_, err := propagation.New(propagation.Config{Engine: f.eng, ResourceIDs: []string{"nope"}})
			return err
		}, []string{`ResourceIDs[0] = "nope"`}},
		{"propagation: repeated resource", func() error {
			_, err := propagation.New(propagation.Config{Engine: f.eng, ResourceIDs: []string{"r", "r"}})
			return err
		}, []string{`ResourceIDs[1] = "r"`, "repeated"}},
		{"propagation: IDs and selector", func() error {
			_, err := propagation.New(propagation.Config{Engine: f.eng, ResourceIDs: []string{"r"}, Selector: func(string) bool { return true }})
			return err
		}, []string{"ResourceIDs and Selector"}},
		{"propagation: negative max errors", func() error {
			_, err := propagation.New(propagation.Config{Engine: f.eng, MaxErrors: -3})
			return err
		}, []string{"MaxErrors = -3"}},
		{"compensation: nothing", func() error { _, err := compensation.New(compensation.Config{}); return err },
			[]string{"Store is nil", "Targets is empty"}},
		{"compensation: bad targets", func() error {
			_, err := compensation.New(compensation.Config{Store: nopManaged{}, CompensationTimeout: -time.Second, Targets: []compensation.Target{
				{Name: "ldap", Sync: nopSync}, {Name: "ldap", Sync: nopSync}, {Name: "hr"}}})
			return err
		}, []string{"CompensationTimeout is negative (-1s)", `Targets[1].Name "ldap" duplicates`, `Targets[2].Sync is nil (target "hr")`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantAll(t, c.new(), c.want...)
		})
	}
}

type nopManaged struct{}

func (nopManaged) Put(context.Context, string, connector.Attributes) error { return nil }
func (nopManaged) Delete(context.Context, string) error                    { return nil }

func nopSync(context.Context, compensation.Change) error { return nil }

func TestBadInputLiveSyncConfig(t *testing.T) {
	t.Parallel()
	precise := memconn.New(memconn.Options{PreciseTokens: true})
	imprecise := memconn.New(memconn.Options{})
	st := memstore.New(memstore.Options{})
	tokens := livesync.NewMemoryTokenStore()
	ok := func(mut func(*livesync.Config)) livesync.Config {
		c := livesync.Config{ResourceID: "r", Class: class, Connector: precise, Store: st, Tokens: tokens}
		mut(&c)
		return c
	}
	for _, c := range []struct {
		name string
		cfg  livesync.Config
		want []string
	}{
		{"nothing", livesync.Config{}, []string{"ResourceID is empty", "Class is empty", "Connector is nil", "Store is nil", "Tokens is nil"}},
		{"batch size with imprecise tokens", ok(func(c *livesync.Config) { c.Connector, c.BatchSize = imprecise, 10 }),
			[]string{"BatchSize 10", "precise"}},
		{"negative batch size", ok(func(c *livesync.Config) { c.BatchSize = -1 }), []string{"BatchSize is negative (-1)"}},
		{"negative workers", ok(func(c *livesync.Config) { c.Workers = -4 }), []string{"Workers is negative (-4)"}},
		{"negative group commit", ok(func(c *livesync.Config) { c.GroupCommit = -1 }), []string{"GroupCommit is negative (-1)"}},
		{"negative fetch size", ok(func(c *livesync.Config) { c.FetchSize = -5 }), []string{"FetchSize is negative (-5)"}},
		{"negative delete guard", ok(func(c *livesync.Config) { c.DeleteGuard.MaxDeletes = -1 }), []string{"DeleteGuard.MaxDeletes is negative (-1)"}},
		{"connector without live sync", ok(func(c *livesync.Config) { c.Connector = getOnly{} }), []string{"does not implement connector.LiveSyncer"}},
		{"lease on a memory token store", ok(func(c *livesync.Config) { c.Lease = &livesync.LeaseConfig{Owner: "a"} }), []string{"FencedTokenStore"}},
		{"lease without owner, negative TTL", ok(func(c *livesync.Config) { c.Lease = &livesync.LeaseConfig{TTL: -time.Second} }),
			[]string{"Lease.Owner is empty", "Lease.TTL is negative (-1s)"}},
		{"stop-after without a count", ok(func(c *livesync.Config) {
			c.ErrorPolicy = livesync.ErrorPolicy{Rules: []livesync.ErrorRule{{Action: livesync.ActionStopAfter}}}
		}), []string{"StopAfter"}},
		{"attempt limit on a stop rule", ok(func(c *livesync.Config) {
			c.ErrorPolicy = livesync.ErrorPolicy{Rules: []livesync.ErrorRule{{Action: livesync.ActionStop, MaxAttempts: 3}}}
		}), []string{"MaxAttempts"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			task, err := livesync.New(c.cfg)
			wantAll(t, err, c.want...)
			if task != nil {
				t.Error("a task came back with the error")
			}
		})
	}
}

// getOnly is a connector without live sync.
type getOnly struct{ connector.Connector }

// scripted is a precise-token resource whose change stream is a script.
type scripted struct {
	*memconn.Conn
	batch connector.ChangeBatch
}

func (s *scripted) FetchChanges(context.Context, connector.ObjectClass, connector.Token, int) (connector.ChangeBatch, error) {
	return s.batch, nil
}

func TestBadInputMalformedChanges(t *testing.T) {
	t.Parallel()
	good := connector.Change{Type: connector.ChangeCreate, Class: class, ID: connector.Identifiers{UID: "u-1", Name: "alice"},
		Object: connector.Attributes{"uid": {"alice"}}, Token: "1"}
	bad := func(mut func(*connector.Change)) connector.Change {
		c := good
		c.ID = connector.Identifiers{UID: "u-2", Name: "bob"}
		c.Object = connector.Attributes{"uid": {"bob"}}
		c.Token = "2"
		mut(&c)
		return c
	}
	for _, c := range []struct {
		name    string
		changes []connector.Change
		// processed: how many good changes come before the bad one.
		processed int
		want      []string
	}{
		{"no identifier", []connector.Change{bad(func(c *connector.Change) { c.ID = connector.Identifiers{} })}, 0, []string{"identifier"}},
		{"no class", []connector.Change{bad(func(c *connector.Change) { c.Class = "" })}, 0, []string{"class"}},
		{"unknown class", []connector.Change{bad(func(c *connector.Change) { c.Class = "group" })}, 0, []string{`"group"`}},
		{"unknown type", []connector.Change{bad(func(c *connector.Change) { c.Type = 42 })}, 0, []string{"type"}},
		{"no token with precise tokens", []connector.Change{bad(func(c *connector.Change) { c.Token = "" })}, 0, []string{`"bob"`, "token"}},
		{"bad change after a good one", []connector.Change{good, bad(func(c *connector.Change) { c.ID = connector.Identifiers{} })}, 1, []string{"identifier"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			conn := &scripted{Conn: memconn.New(memconn.Options{PreciseTokens: true})}
			st := memstore.New(memstore.Options{})
			tokens := livesync.NewMemoryTokenStore()
			task, err := livesync.New(livesync.Config{ResourceID: "r", Class: class, Connector: conn, Store: st, Tokens: tokens})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := task.Run(ctx); err != nil { // first run: takes the current token
				t.Fatal(err)
			}
			start, _, _ := task.Token(ctx)
			conn.batch = connector.ChangeBatch{Changes: c.changes, Token: "9"}
			res, err := task.Run(ctx)
			if !errors.Is(err, livesync.ErrMalformedChange) {
				t.Fatalf("run: %v, want ErrMalformedChange", err)
			}
			wantAll(t, err, c.want...)
			if connector.Classify(err) != connector.CategorySchema {
				t.Errorf("category %s, want schema", connector.Classify(err))
			}
			n, _ := st.Count(ctx, shadow.Query{})
			tok, _, _ := task.Token(ctx)
			wantTok := start
			if c.processed > 0 {
				wantTok = good.Token
			}
			if n != c.processed || tok != wantTok || res.Processed != c.processed {
				t.Errorf("after the bad change: %d shadows, %d processed, token %q; want %d, %d, %q",
					n, res.Processed, tok, c.processed, c.processed, wantTok)
			}
		})
	}
}

func TestBadInputSQLStoreOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		opts sqlstore.Options
		want []string
	}{
		{"schema on SQLite", sqlstore.Options{Schema: "umbra"}, []string{"Schema"}},
		{"table prefix not an identifier", sqlstore.Options{TablePrefix: "x; DROP TABLE y"}, []string{"TablePrefix"}},
		{"table prefix upper case", sqlstore.Options{TablePrefix: "Umbra_"}, []string{"TablePrefix"}},
		{"negative busy timeout", sqlstore.Options{BusyTimeout: -time.Second}, []string{"BusyTimeout"}},
		{"negative connections", sqlstore.Options{MaxOpenConns: -1}, []string{"MaxOpenConns"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".db")
			st, err := sqlstore.OpenSQLite(ctx, path, c.opts)
			if st != nil {
				st.Close()
			}
			wantAll(t, err, c.want...)
			if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
				t.Errorf("refused options wrote %s (%d bytes)", path, fi.Size())
			}
		})
	}
}

// A stored token the resource does not know (ahead of its change log, or
// not a position at all: a resource restored from backup, a token edited
// by hand) is refused by the fetch; the run stops, nothing is written and
// the token stays for an operator to reset.
func TestBadInputTokenNotOfTheStream(t *testing.T) {
	t.Parallel()
	for _, tok := range []connector.Token{"999", "abc", "-1"} {
		t.Run(string(tok), func(t *testing.T) {
			ctx := context.Background()
			conn := memconn.New(memconn.Options{PreciseTokens: true})
			st := memstore.New(memstore.Options{})
			task, err := livesync.New(livesync.Config{ResourceID: "r", Class: class, Connector: conn, Store: st,
				Tokens: livesync.NewMemoryTokenStore()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Put(class, connector.Attributes{"uid": {"alice"}}); err != nil {
				t.Fatal(err)
			}
			if err := task.ResetToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
			_, err = task.Run(ctx)
			wantAll(t, err, string(tok))
			if connector.Classify(err) != connector.CategorySchema {
				t.Errorf("category %s, want schema", connector.Classify(err))
			}
			if got, _, _ := task.Token(ctx); got != tok {
				t.Errorf("token moved to %q", got)
			}
			if n, _ := st.Count(ctx, shadow.Query{}); n != 0 {
				t.Errorf("%d shadows written", n)
			}
		})
	}
}
