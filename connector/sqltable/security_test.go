package sqltable_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/sqltable"
)

// TestHostileValuesPerDialect adds values the conformance suite leaves
// out: 100 KB values and names, NUL, control bytes and invalid UTF-8. Each
// either comes back exactly, or is refused with a schema error naming the
// attribute and nothing written; a search by a long or hostile
// name finds exactly its object.
func TestHostileValuesPerDialect(t *testing.T) {
	t.Parallel()
	for _, d := range []struct {
		name    string
		dialect sqltable.Dialect
		open    func(*testing.T) *sql.DB
	}{{"sqlite", sqltable.SQLite, openSQLite}, {"postgres", sqltable.Postgres, openPostgres}} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := newConnector(t, d.open(t), d.dialect)
			long := strings.Repeat("0123456789abcdef", 100<<10/16) // 100 KB
			values := map[string]string{
				"long value":    long,
				"nul":           "nul\x00byte",
				"control bytes": "ctl\x01\x1f\x7f",
				"invalid utf-8": "bad utf8 \xff\xfe",
				"injection":     `' OR 1=1 --`,
				"filter":        `*)(uid=*`,
				"line breaks":   "tab\tnew\nline\r",
			}
			i := 0
			for what, v := range values {
				i++
				name := "hostile-" + strings.ReplaceAll(what, " ", "-")
				res, err := c.Add(ctx, class, connector.Attributes{"username": {name}, "description": {v}})
				if err != nil {
					if connector.Classify(err) != connector.CategorySchema || !strings.Contains(err.Error(), `"description"`) {
						t.Errorf("%s: Add failed with %v (%v); want success or a schema error naming the attribute", what, err, connector.Classify(err))
					}
					if utf8.ValidString(v) && !strings.ContainsRune(v, 0) {
						t.Errorf("%s: text value %q refused: %v", what, v, err)
					}
					if n := countNamed(t, c, name); n != 0 {
						t.Errorf("%s: a refused Add left %d objects", what, n)
					}
					t.Logf("%s: refused: %v", what, err)
					continue
				}
				if err := checkModify(ctx, c, res.ID, v); err != nil {
					t.Errorf("%s: %v", what, err)
				}
				got, err := c.Get(ctx, class, res.ID)
				if err != nil {
					t.Fatalf("%s: Get: %v", what, err)
				}
				if g := got.Attributes.Get("description"); g != v {
					t.Errorf("%s: stored %d bytes, read back %d bytes (%.40q...)", what, len(v), len(g), g)
				}
			}

			// Names: 100 KB, and names that look like patterns, each found
			// alone by Get and by Search.
			for _, name := range []string{"n-" + long, "n-%", "n-_", "n-' OR 1=1 --", "n-*"} {
				if _, err := c.Add(ctx, class, connector.Attributes{"username": {name}}); err != nil {
					t.Fatalf("Add named %.40q: %v", name, err)
				}
			}
			for _, name := range []string{"n-" + long, "n-%", "n-_", "n-' OR 1=1 --", "n-*"} {
				if o, err := c.Get(ctx, class, connector.Identifiers{Name: name}); err != nil || o.ID.Name != name {
					t.Errorf("Get by name %.40q: %v, %.40q", name, err, o.ID.Name)
				}
				if n := countNamed(t, c, name); n != 1 {
					t.Errorf("Search by name %.40q found %d objects, want 1", name, n)
				}
			}
			if d.dialect == sqltable.Postgres {
				_, err := c.Modify(ctx, class, connector.Identifiers{Name: "n-%"},
					[]connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"a\x00b"}}})
				if connector.Classify(err) != connector.CategorySchema || !strings.Contains(fmt.Sprint(err), `"mail"`) {
					t.Errorf("Modify to a NUL value: %v; want a schema error naming the attribute", err)
				}
			}
			if n := countNamed(t, c, "n-"+long[:len(long)-1]); n != 0 {
				t.Errorf("a search by a prefix of the long name found %d objects", n)
			}
		})
	}
}

// checkModify replaces the description of id by a prefix of v and then v
// again: both must come back exactly.
func checkModify(ctx context.Context, c *sqltable.LiveSync, id connector.Identifiers, v string) error {
	for _, w := range []string{v[:len(v)/2], v} {
		if _, err := c.Modify(ctx, class, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "description", Values: []string{w}}}); err != nil {
			return fmt.Errorf("Modify to %d bytes: %w", len(w), err)
		}
		o, err := c.Get(ctx, class, id)
		if err != nil {
			return err
		}
		if g := o.Attributes.Get("description"); g != w {
			return fmt.Errorf("modified to %d bytes, read back %d bytes", len(w), len(g))
		}
	}
	return nil
}

// countNamed returns how many objects a search by name finds.
func countNamed(t *testing.T, c *sqltable.LiveSync, name string) int {
	t.Helper()
	n := 0
	err := c.Search(context.Background(), class, connector.SearchOptions{Name: name}, func(o connector.Object) error {
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("Search by name %.40q: %v", name, err)
	}
	return n
}
