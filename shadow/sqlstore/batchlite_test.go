package sqlstore

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// TestLiteGroupMatchesOneAtATime: on SQLite a group of 150 writes of every
// kind — creates (more than the largest multi-row statement), modifies that
// keep the indexed columns, renames, a shadow made dead, a delete, a shadow
// created and then updated — goes through the multi-row statements without
// a retry, and stores what the same writes one at a time store, with the
// same versions and timestamps on the callers' shadows.
func TestLiteGroupMatchesOneAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	group := func(s *Store) []shadow.Write {
		seeded := seed(t, s, 60)
		var writes []shadow.Write
		add := func(op shadow.WriteOp, sh *shadow.Shadow) { writes = append(writes, shadow.Write{Op: op, Shadow: sh}) }
		for i := range 80 {
			add(shadow.WriteCreate, groupShadow(fmt.Sprintf("n%03d", i), fmt.Sprintf("new%03d", i)))
		}
		for i, sh := range seeded[:55] {
			switch {
			case i%10 == 3:
				sh.Name = "renamed-" + sh.UID
			case i%10 == 7:
				sh.Kind, sh.Intent, sh.Origin = "k", "i", shadow.OriginAssigned
			}
			sh.Attributes["mail"] = []string{fmt.Sprintf("changed%d@example.org", i)}
			add(shadow.WriteUpdate, sh)
		}
		dead := seeded[55]
		dead.Dead, dead.Exists, dead.DeadSince = true, false, t0
		add(shadow.WriteUpdate, dead)
		add(shadow.WriteDelete, seeded[56])
		// Created with a generated ID, then updated in a later segment.
		twice := groupShadow("", "twice")
		add(shadow.WriteCreate, twice)
		add(shadow.WriteUpdate, twice)
		// The freed UID of the dead shadow, taken by a new one.
		add(shadow.WriteCreate, groupShadow("reuse", dead.UID))
		return writes
	}

	lite, _ := groupStore(t, newSQLite)
	single, _ := groupStore(t, newSQLite)
	single.lite = nil
	lw, sw := group(lite), group(single)
	if err := lite.CommitGroup(ctx, lw, groupKey, "t0", "t1", nil); err != nil {
		t.Fatalf("CommitGroup: %v", err)
	}
	if n := lite.bulkRetries.Load(); n != 0 {
		t.Errorf("the group was run again a write at a time %d times, want 0", n)
	}
	if err := single.CommitGroup(ctx, sw, groupKey, "t0", "t1", nil); err != nil {
		t.Fatalf("CommitGroup one at a time: %v", err)
	}

	// The generated ID differs; everything else must not.
	twiceID := func(writes []shadow.Write) string { return writes[len(writes)-2].Shadow.ID }
	norm := func(id, twice string) string { return strings.ReplaceAll(id, twice, "twice") }
	for i := range lw {
		l, o := lw[i].Shadow, sw[i].Shadow
		if norm(l.ID, twiceID(lw)) != norm(o.ID, twiceID(sw)) || l.Version != o.Version ||
			!l.CreatedAt.Equal(o.CreatedAt) || !l.UpdatedAt.Equal(o.UpdatedAt) {
			t.Errorf("write %d: caller's shadow %s v%d %s %s, one at a time %s v%d %s %s", i,
				l.ID, l.Version, l.CreatedAt, l.UpdatedAt, o.ID, o.Version, o.CreatedAt, o.UpdatedAt)
		}
	}
	all := func(s *Store, twice string) map[string]*shadow.Shadow {
		list, err := s.List(ctx, shadow.Query{})
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]*shadow.Shadow, len(list))
		for _, sh := range list {
			sh.ID = norm(sh.ID, twice)
			m[sh.ID] = sh
		}
		return m
	}
	got, want := all(lite, twiceID(lw)), all(single, twiceID(sw))
	if len(got) != len(want) || len(got) != 60-1+80+2 {
		t.Fatalf("%d shadows stored, one at a time %d", len(got), len(want))
	}
	for id, w := range want {
		if g := got[id]; !reflect.DeepEqual(g, w) {
			t.Errorf("shadow %s:\n got %+v\nwant %+v", id, g, w)
		}
	}
}

// TestLiteChunk: a segment of n rows takes the largest statements first.
func TestLiteChunk(t *testing.T) {
	for n, want := range map[int]int{1: 0, 2: 1, 3: 1, 4: 2, 63: 5, 64: 6, 100: 6, 1000: liteChunkBits} {
		if k := liteChunk(n); k != want {
			t.Errorf("liteChunk(%d) = %d, want %d", n, k, want)
		}
	}
}

// TestLiteStatementsAnonymous: the multi-row statements take anonymous
// parameters, which SQLite binds without looking them up in a list of
// names (numbered "$N" ones made binding a 64-row insert cost more than
// writing it), and as many as their rows need.
func TestLiteStatementsAnonymous(t *testing.T) {
	s := newSQLite(t, connector.NewFakeClock(t0))
	for k := range liteChunkBits + 1 {
		for _, c := range []struct {
			stmt string
			args int
		}{{s.lite.insert[k], liteInsertArgs << k}, {s.lite.update[k], 1 + liteUpdateArgs<<k}} {
			if strings.Contains(c.stmt, "$") {
				t.Errorf("statement of %d rows has numbered parameters: %.80s…", 1<<k, c.stmt)
			}
			if n := strings.Count(c.stmt, "?"); n != c.args {
				t.Errorf("statement of %d rows has %d parameters, want %d: %.80s…", 1<<k, n, c.args, c.stmt)
			}
		}
	}
}

// TestLiteTempStoreInMemory: the write connection keeps temporary data in
// memory. A multi-row statement keeps a statement journal, for undoing
// itself alone; past 64 KiB SQLite moved it to a temporary file (opened,
// written and deleted for each 64-row insert). Durability is unchanged:
// synchronous stays FULL.
func TestLiteTempStoreInMemory(t *testing.T) {
	t.Parallel()
	s := newSQLite(t, connector.NewFakeClock(t0))
	for pragma, want := range map[string]int{"temp_store": 2, "synchronous": 2} {
		var got int
		if err := s.wdb.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %d (%v), want %d", pragma, got, err, want)
		}
	}
}
