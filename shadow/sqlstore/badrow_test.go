package sqlstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

// TestCorruptRow: a row whose JSON does not decode fails every read with
// ErrCorrupt naming the shadow, and a Claim that meets it writes nothing.
func TestCorruptRow(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t, connector.NewFakeClock(t0))
			ctx := context.Background()
			for _, id := range []string{"a-good", "b-bad", "c-good", "d-bad-attrs"} {
				if err := s.Create(ctx, newShadow(id)); err != nil {
					t.Fatal(err)
				}
			}
			// SQLite stores text: break the JSON itself. PostgreSQL's jsonb
			// only holds valid JSON: store JSON of the wrong shape.
			badPending, badAttrs := `[{"id":1,"delta":`, `{"n":"not a list"`
			if d.name == "postgres" {
				badPending, badAttrs = `{"not":"a list"}`, `{"n":"not a list"}`
			}
			execSQL(t, s, `UPDATE {t}shadows SET pending = $1 WHERE id = 'b-bad'`, badPending)
			execSQL(t, s, `UPDATE {t}shadows SET attributes = $1 WHERE id = 'd-bad-attrs'`, badAttrs)

			for id, what := range map[string]string{"b-bad": "pending operations", "d-bad-attrs": "attributes"} {
				_, err := s.Get(ctx, id)
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"`+id+`"`) || !strings.Contains(err.Error(), what) {
					t.Errorf("Get(%s): %v, want ErrCorrupt naming the shadow and its %s", id, err, what)
				}
			}
			if _, err := s.Get(ctx, "a-good"); err != nil {
				t.Errorf("Get of a good row: %v", err)
			}
			if _, err := s.List(ctx, shadow.Query{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("List over a corrupt row: %v", err)
			}
			_, err := s.Claim(ctx, shadow.Query{DueBy: t0}, "w", 60e9, 0)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "b-bad") {
				t.Errorf("Claim over a corrupt row: %v", err)
			}
			var claimed int
			if err := s.rdb.QueryRowContext(ctx, s.sql(`SELECT count(*) FROM {t}shadows WHERE claim_owner IS NOT NULL`)).Scan(&claimed); err != nil {
				t.Fatal(err)
			}
			if claimed != 0 {
				t.Errorf("a failed Claim left %d claims", claimed)
			}

			// A corrupt set-aside change.
			c := livesync.SetAsideChange{ID: "c1", Change: connector.Change{Type: connector.ChangeCreate, Class: "account", ID: connector.Identifiers{UID: "u"}}}
			if err := s.SetAside(ctx, key, c); err != nil {
				t.Fatal(err)
			}
			execSQL(t, s, `UPDATE {t}set_aside SET change = $1 WHERE id = 'c1'`, `{"type":"create"}`)
			if _, err := s.SetAsideChanges(ctx, key); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"c1"`) {
				t.Errorf("SetAsideChanges over a corrupt row: %v", err)
			}
		})
	}
}

func execSQL(t *testing.T, s *Store, stmt string, args ...any) {
	t.Helper()
	if _, err := s.wdb.ExecContext(context.Background(), s.sql(stmt), args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// TestBinaryValuesRoundTrip: values and names that are not text survive,
// in attributes, pending deltas and set-aside changes.
func TestBinaryValuesRoundTrip(t *testing.T) {
	t.Parallel()
	bin := "\x00\xff\xfe raw"
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t, nil)
			ctx := context.Background()
			sh := newShadow("bin")
			sh.Attributes = connector.Attributes{"photo": {bin, "text"}, bin: {"v"}, binaryNamePrefix + "x": {"looks encoded"}}
			sh.Pending[0].Delta.Changes[0].Values = []string{bin}
			if err := s.Create(ctx, sh); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, "bin")
			if err != nil {
				t.Fatal(err)
			}
			if !got.Attributes.Equal(sh.Attributes) || got.Pending[0].Delta.Changes[0].Values[0] != bin {
				t.Fatalf("binary values changed: %q / %q", got.Attributes, got.Pending[0].Delta.Changes[0].Values)
			}
			c := livesync.SetAsideChange{ID: "c", Change: connector.Change{Type: connector.ChangeModify, Class: "account",
				ID: connector.Identifiers{UID: "u"}, Object: connector.Attributes{"photo": {bin}}}}
			if err := s.SetAside(ctx, key, c); err != nil {
				t.Fatal(err)
			}
			list, err := s.SetAsideChanges(ctx, key)
			if err != nil || len(list) != 1 || list[0].Change.Object.Get("photo") != bin {
				t.Fatalf("set-aside binary value: %v %v", list, err)
			}
			if list[0].SetAsideAt.IsZero() {
				t.Error("a zero SetAsideAt was not set to now")
			}
		})
	}
}
