package sqlstore

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// bulkCols are the shadows columns a bulk copy takes from its template row
// (all but id and uid, which it makes unique).
const bulkCols = `resource_id, class, kind, intent, name, attributes, obj_exists, dead, dead_since, origin, version,
	pending, next_due, needs_recon, reconciled_at, has_unfinished, oldest_unfinished, oldest_retry, oldest_grouped,
	oldest_async, claim_owner, claim_until, created_at, updated_at`

// copyShadow inserts n copies of the shadow template, with IDs and UIDs
// prefix+number, in one statement.
func copyShadow(t *testing.T, s *Store, template, prefix string, n int) {
	t.Helper()
	execSQL(t, s, `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $1)
		INSERT INTO {t}shadows (id, uid, `+bulkCols+`)
		SELECT $2 || (1000000 + g.n), $2 || (1000000 + g.n), `+bulkCols+` FROM {t}shadows, g WHERE id = $3`,
		int64(n), prefix, template)
}

// TestPartialIndexesServeWorkQueues: with 20,000 shadows of which 100 have
// unfinished operations and are due, the engines' queries read the partial
// indexes, whose size is the 100 — not the table. EXPLAIN shows it.
func TestPartialIndexesServeWorkQueues(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t, connector.NewFakeClock(t0))
			ctx := context.Background()
			idle := newShadow("idle")
			idle.Pending, idle.NextDue = nil, time.Time{}
			for _, sh := range []*shadow.Shadow{newShadow("due"), idle} {
				if err := s.Create(ctx, sh); err != nil {
					t.Fatal(err)
				}
			}
			// 20,000 shadows on PostgreSQL; SQLite (slow under -race) plans
			// the same with 2,000.
			total := 20_000
			if d.name == "sqlite" {
				total = 2_000
			}
			copyShadow(t, s, "idle", "idle-", total-101)
			copyShadow(t, s, "due", "due-", 99)
			execSQL(t, s, `ANALYZE`)
			if n, err := s.Count(ctx, shadow.Query{DueBy: t0}); err != nil || n != 100 {
				t.Fatalf("due shadows: %d (%v), want 100", n, err)
			}
			if n, err := s.Count(ctx, shadow.Query{}); err != nil || n != total {
				t.Fatalf("shadows: %d (%v), want %d", n, err, total)
			}

			claimStmt, claimArgs, err := s.claimSQL(shadow.Query{DueBy: t0}, "w", time.Minute, 50)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name  string
				q     shadow.Query
				stmt  string
				args  []any
				index string
			}{
				{name: "Unfinished", q: shadow.Query{Unfinished: true, Limit: 50}, index: "umbra_shadows_unfinished"},
				{name: "DueBy", q: shadow.Query{DueBy: t0, Limit: 50}, index: "umbra_shadows_next_due"},
				{name: "OldestRetryBefore", q: shadow.Query{ResourceID: "r1", PendingType: shadow.OpRetry, OldestPendingBefore: t0, Limit: 50}, index: "umbra_shadows_oldest_retry"},
				{name: "Claim", stmt: claimStmt, args: claimArgs, index: "umbra_shadows_next_due"},
				// Correlation by identifier (live sync, discovery): the
				// identifier's index, not a walk of the resource's shadows.
				{name: "ByUID", q: shadow.Query{ResourceID: "r1", Class: "account", UID: "due-1000001", Dead: shadow.DeadExclude, Limit: 2}, index: "umbra_shadows_uid"},
				{name: "ByName", q: shadow.Query{ResourceID: "r1", Class: "account", Name: "x", Dead: shadow.DeadExclude}, index: "umbra_shadows_name"},
			} {
				stmt, args := c.stmt, c.args
				if stmt == "" {
					if stmt, args, err = s.listSQL(c.q); err != nil {
						t.Fatal(err)
					}
				}
				plan := explain(t, s, stmt, args)
				t.Logf("%s %s plan:\n%s", d.name, c.name, plan)
				if !strings.Contains(plan, c.index) {
					t.Errorf("%s: the plan does not use %s", c.name, c.index)
				}
				if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "SCAN "+s.prefix+"shadows\n") {
					t.Errorf("%s: the plan reads the whole table", c.name)
				}
			}
			if d.name == "postgres" {
				// Executed: the pages read follow the 100 due shadows,
				// a small fraction of the table's pages.
				stmt, args, _ := s.listSQL(shadow.Query{DueBy: t0, Limit: 50})
				plan := explainPrefix(t, s, "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) ", stmt, args)
				var pages int
				if err := s.rdb.QueryRowContext(ctx, `SELECT relpages FROM pg_class WHERE oid = 'umbra_shadows'::regclass`).Scan(&pages); err != nil {
					t.Fatal(err)
				}
				var hit, read int
				line := plan[strings.Index(plan, "Buffers: "):]
				line = line[:strings.IndexByte(line, '\n')]
				for _, f := range strings.Fields(line) {
					if v, ok := strings.CutPrefix(f, "hit="); ok {
						hit, _ = strconv.Atoi(v)
					}
					if v, ok := strings.CutPrefix(f, "read="); ok {
						read, _ = strconv.Atoi(v)
					}
				}
				t.Logf("postgres DueBy, executed (table: %d pages):\n%s", pages, plan)
				if hit+read == 0 || (hit+read)*10 > pages {
					t.Errorf("the due query read %d pages of a %d-page table; want a small fraction", hit+read, pages)
				}
			}
		})
	}
}

func explain(t *testing.T, s *Store, stmt string, args []any) string {
	t.Helper()
	if s.d == sqliteDialect {
		return explainPrefix(t, s, "EXPLAIN QUERY PLAN ", stmt, args)
	}
	return explainPrefix(t, s, "EXPLAIN ", stmt, args)
}

func explainPrefix(t *testing.T, s *Store, prefix, stmt string, args []any) string {
	t.Helper()
	rows, err := s.wdb.QueryContext(context.Background(), prefix+stmt, args...)
	if err != nil {
		t.Fatalf("%s%s: %v", prefix, stmt, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		// PostgreSQL: one column of plan text. SQLite: id, parent,
		// notused, detail.
		line := vals[len(vals)-1]
		switch v := line.(type) {
		case []byte:
			b.Write(v)
		case string:
			b.WriteString(v)
		}
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
