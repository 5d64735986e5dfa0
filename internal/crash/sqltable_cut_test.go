package crash_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/sqltable"
	"github.com/umbra-idm/umbra/internal/testsvc"
)

// TestSQLTableConnectionLossIsCommunication: when the connection to the
// resource's PostgreSQL is lost (cut under an open connection, or refused
// while it reconnects), every sqltable call either succeeds on a new
// connection or fails with a communication category. A generic error would
// make the consistency engine fail the operation for good (a modify given
// up, the shadow marked for reconciliation) over a network blip: found by
// the random connection cuts of TestConnectionCutRandomRefreshPostgres.
func TestSQLTableConnectionLossIsCommunication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy, dsn := testsvc.PostgresProxy(t, testsvc.PostgresDSN(t))
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := installResource(ctx, db, sqltable.Postgres); err != nil {
		t.Fatal(err)
	}
	c, err := newConnector(ctx, db, sqltable.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Add(ctx, class, connector.Attributes{"username": {"u"}, "v": {"0"}, "seq": {"0"}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID
	calls := []struct {
		name string
		call func() error
	}{
		{"get", func() error { _, err := c.Get(ctx, class, id); return err }},
		{"modify", func() error {
			_, err := c.Modify(ctx, class, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "v", Values: []string{"1"}}})
			return err
		}},
		{"add", func() error {
			_, err := c.Add(ctx, class, connector.Attributes{"username": {"other"}})
			if connector.Classify(err) == connector.CategoryAlreadyExists {
				return nil
			}
			return err
		}},
		{"delete", func() error {
			_, err := c.Delete(ctx, class, connector.Identifiers{Name: "nobody"})
			if connector.Classify(err) == connector.CategoryNotFound {
				return nil
			}
			return err
		}},
	}
	for _, blocked := range []bool{false, true} {
		for _, cl := range calls {
			// A pooled connection, then the cut under it.
			if _, err := c.Get(ctx, class, id); err != nil && !blocked {
				t.Fatalf("get before the cut: %v", err)
			}
			if blocked {
				proxy.Block()
			}
			proxy.Cut()
			err := cl.call()
			proxy.Unblock()
			if err != nil && !connector.Classify(err).Communication() {
				t.Errorf("%s after a cut (new connections refused: %v): category %s, want a communication category: %v",
					cl.name, blocked, connector.Classify(err), err)
			}
		}
	}
}

// lostAnswer sets up sqltable on a fresh PostgreSQL schema reached through a
// proxy, with one account "u".
func lostAnswer(t *testing.T) (*testsvc.Proxy, *sqltable.Connector, *sql.DB, connector.Identifiers) {
	t.Helper()
	ctx := context.Background()
	direct := testsvc.PostgresDSN(t)
	proxy, dsn := testsvc.PostgresProxy(t, direct)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	check, err := sql.Open("pgx", direct)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check.Close() })
	if err := installResource(ctx, db, sqltable.Postgres); err != nil {
		t.Fatal(err)
	}
	c, err := newConnector(ctx, db, sqltable.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Add(ctx, class, connector.Attributes{"username": {"u"}, "v": {"0"}, "seq": {"0"}})
	if err != nil {
		t.Fatal(err)
	}
	return proxy, c, check, res.ID
}

func containsAll(b []byte, parts ...string) bool {
	s := strings.ToLower(string(b))
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestSQLTableLostCommitAnswerIsOutcomeUnknown: a modify whose COMMIT
// reached the server but whose answer was lost took effect; the connector
// must say outcome unknown (the engine then reads before retrying), never
// "not sent" (the engine would send it again without looking) nor generic
// (the engine would give the change up).
func TestSQLTableLostCommitAnswerIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy, c, check, id := lostAnswer(t)
	cut := proxy.CutAnswerTo(func(b []byte) bool { return len(b) > 0 && b[0] == 'Q' && containsAll(b, "commit") })
	_, err := c.Modify(ctx, class, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "v", Values: []string{"1"}}})
	<-cut
	var v string
	if err := check.QueryRowContext(ctx, "SELECT v FROM accounts WHERE username = 'u'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "1" {
		t.Fatalf("the commit did not take effect (v = %q); the test's cut came too early", v)
	}
	if cat := connector.Classify(err); err == nil || cat != connector.CategoryOutcomeUnknown {
		t.Fatalf("modify committed, answer lost: category %v, want %s: %v", cat, connector.CategoryOutcomeUnknown, err)
	}
}

// TestSQLTableLostInsertAnswer: an add whose INSERT took effect but whose
// answer was lost must not report "already exists" for its own row (which
// database/sql produces by sending the INSERT again on a new connection when
// the driver says the first was safe to retry), and must leave one row.
func TestSQLTableLostInsertAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy, c, check, _ := lostAnswer(t)
	cut := proxy.CutAnswerTo(func(b []byte) bool { return containsAll(b, "victim-7") })
	_, err := c.Add(ctx, class, connector.Attributes{"username": {"victim-7"}, "v": {"0"}, "seq": {"0"}})
	<-cut
	var n int
	if err := check.QueryRowContext(ctx, "SELECT count(*) FROM calls WHERE username = 'victim-7' AND op = 'add'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d inserts of victim-7 committed, want 1", n)
	}
	t.Logf("add with its answer lost: %v", err)
	if err != nil && connector.Classify(err) != connector.CategoryOutcomeUnknown {
		t.Fatalf("add took effect, answer lost: category %v, want success or %s: %v",
			connector.Classify(err), connector.CategoryOutcomeUnknown, err)
	}
}
