package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

// The group-write tests run CommitGroup on both dialects: on PostgreSQL a
// group goes as multi-row statements, which must keep the semantics of the
// writes one at a time.

var groupKey = livesync.TokenKey{ResourceID: "r1", Class: "account", Task: "group"}

func groupShadow(id, uid string) *shadow.Shadow {
	return &shadow.Shadow{ID: id, ResourceID: "r1", Class: "account", UID: uid, Name: "name-" + uid,
		Attributes: connector.Attributes{"mail": {uid + "@example.org"}}, Exists: true, Origin: shadow.OriginDiscovered}
}

// groupStore opens a store on d with a fake clock at t0 and stores the
// token "t0" under groupKey.
func groupStore(t *testing.T, open func(testing.TB, connector.Clock) *Store) (*Store, *connector.FakeClock) {
	t.Helper()
	clk := connector.NewFakeClock(t0)
	s := open(t, clk)
	if err := s.CompareAndSwapToken(context.Background(), groupKey, "", "t0"); err != nil {
		t.Fatal(err)
	}
	return s, clk
}

// seed stores n shadows g000.. with UIDs u000.. and returns them as read
// back.
func seed(t *testing.T, s *Store, n int) []*shadow.Shadow {
	t.Helper()
	ctx := context.Background()
	writes := make([]shadow.Write, n)
	for i := range writes {
		writes[i] = shadow.Write{Op: shadow.WriteCreate, Shadow: groupShadow(fmt.Sprintf("g%03d", i), fmt.Sprintf("u%03d", i))}
	}
	if err := s.Apply(ctx, writes); err != nil {
		t.Fatal(err)
	}
	out := make([]*shadow.Shadow, n)
	for i := range out {
		sh, err := s.Get(ctx, fmt.Sprintf("g%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sh
	}
	return out
}

// callerState is what a write sets on the caller's shadow.
type callerState struct {
	id                   string
	version              int64
	createdAt, updatedAt time.Time
}

func callers(writes []shadow.Write) []callerState {
	out := make([]callerState, len(writes))
	for i, w := range writes {
		out[i] = callerState{w.Shadow.ID, w.Shadow.Version, w.Shadow.CreatedAt, w.Shadow.UpdatedAt}
	}
	return out
}

// wantGroupFailed checks that the group failed with target naming write
// at and shadow name, and that nothing was written: the token, the stored
// shadows (as before) and the callers' shadows are as they were.
func wantGroupFailed(t *testing.T, s *Store, err, target error, at, n int, name string, before []*shadow.Shadow, writes []shadow.Write, was []callerState) {
	t.Helper()
	ctx := context.Background()
	if !errors.Is(err, target) {
		t.Fatalf("CommitGroup: %v, want %v", err, target)
	}
	if want := fmt.Sprintf("write %d of %d: shadow %q", at, n, name); !strings.Contains(err.Error(), want) {
		t.Fatalf("CommitGroup: %v, want it to name %s", err, want)
	}
	if tok, _, err := s.LoadToken(ctx, groupKey); err != nil || tok != "t0" {
		t.Fatalf("token after a failed group: %q, %v; want t0", tok, err)
	}
	all, err := s.List(ctx, shadow.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(before) {
		t.Fatalf("%d shadows after a failed group, want %d", len(all), len(before))
	}
	for i, sh := range all {
		if b := before[i]; sh.ID != b.ID || sh.Version != b.Version || sh.UID != b.UID || !sh.UpdatedAt.Equal(b.UpdatedAt) ||
			sh.Attributes.Get("mail") != b.Attributes.Get("mail") {
			t.Fatalf("shadow %s after a failed group: version %d, UID %q, mail %q, updated %v; want %d, %q, %q, %v",
				sh.ID, sh.Version, sh.UID, sh.Attributes.Get("mail"), sh.UpdatedAt, b.Version, b.UID, b.Attributes.Get("mail"), b.UpdatedAt)
		}
	}
	for i, c := range callers(writes) {
		if c != was[i] {
			t.Fatalf("failed group changed write %d's shadow from %+v to %+v", i, was[i], c)
		}
	}
}

// TestGroupCreatesDuplicate: a create in the middle of 100 whose live
// identity or ID is taken fails the group with ErrDuplicate naming it.
func TestGroupCreatesDuplicate(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		for _, taken := range []string{"identity", "ID", "identity in the group", "ID in the group"} {
			t.Run(d.name+"/"+taken, func(t *testing.T) {
				t.Parallel()
				s, clk := groupStore(t, d.open)
				before := seed(t, s, 3)
				clk.Advance(time.Minute)
				writes := make([]shadow.Write, 100)
				for i := range writes {
					// Every other create lets the store choose the ID.
					id := ""
					if i%2 == 1 {
						id = fmt.Sprintf("c%03d", i)
					}
					writes[i] = shadow.Write{Op: shadow.WriteCreate, Shadow: groupShadow(id, fmt.Sprintf("new%03d", i))}
				}
				bad := writes[57].Shadow
				bad.ID = "bad"
				switch taken {
				case "identity":
					bad.UID = "u001"
				case "ID":
					bad.ID = "g002"
				case "identity in the group":
					bad.UID = "new030"
				case "ID in the group":
					bad.ID = "c031"
				}
				was := callers(writes)
				err := s.CommitGroup(context.Background(), writes, groupKey, "t0", "t1", nil)
				wantGroupFailed(t, s, err, shadow.ErrDuplicate, 57, 100, bad.ID, before, writes, was)
			})
		}
	}
}

// TestGroupUpdatesStale: an update in the middle of 100 whose version
// moved, or whose shadow is gone, fails the group with ErrConflict or
// ErrNotFound naming it.
func TestGroupUpdatesStale(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		for _, target := range []error{shadow.ErrConflict, shadow.ErrNotFound, shadow.ErrDuplicate} {
			t.Run(fmt.Sprintf("%s/%v", d.name, target), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				s, clk := groupStore(t, d.open)
				shadows := seed(t, s, 101)
				bad := shadows[43]
				switch target {
				case shadow.ErrConflict:
					moved := bad.Clone()
					if err := s.Update(ctx, moved); err != nil {
						t.Fatal(err)
					}
				case shadow.ErrNotFound:
					if err := s.Delete(ctx, bad.ID, bad.Version); err != nil {
						t.Fatal(err)
					}
				case shadow.ErrDuplicate:
					bad.UID = "u100" // held by g100, outside the group
				}
				before, err := s.List(ctx, shadow.Query{})
				if err != nil {
					t.Fatal(err)
				}
				clk.Advance(time.Minute)
				writes := make([]shadow.Write, 100)
				for i := range writes {
					shadows[i].Attributes["mail"] = []string{"changed@example.org"}
					writes[i] = shadow.Write{Op: shadow.WriteUpdate, Shadow: shadows[i]}
				}
				was := callers(writes)
				err = s.CommitGroup(ctx, writes, groupKey, "t0", "t1", nil)
				wantGroupFailed(t, s, err, target, 43, 100, bad.ID, before, writes, was)
			})
		}
	}
}

// TestGroupDeleteStale: a delete in the middle of a group whose version
// moved fails the group with ErrConflict naming it.
func TestGroupDeleteStale(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := groupStore(t, d.open)
			shadows := seed(t, s, 60)
			if err := s.Update(ctx, shadows[30].Clone()); err != nil {
				t.Fatal(err)
			}
			before, err := s.List(ctx, shadow.Query{})
			if err != nil {
				t.Fatal(err)
			}
			var writes []shadow.Write
			for i := range 30 {
				writes = append(writes, shadow.Write{Op: shadow.WriteCreate, Shadow: groupShadow("", fmt.Sprintf("new%03d", i))})
			}
			for _, sh := range shadows[:60] {
				writes = append(writes, shadow.Write{Op: shadow.WriteDelete, Shadow: sh})
			}
			was := callers(writes)
			err = s.CommitGroup(ctx, writes, groupKey, "t0", "t1", nil)
			wantGroupFailed(t, s, err, shadow.ErrConflict, 60, 90, shadows[30].ID, before, writes, was)
		})
	}
}

// TestGroupMixed: creates, updates and deletes in one group, some of one
// shadow, and identities freed and taken, give what the writes one at a
// time give; on PostgreSQL without running the group twice.
func TestGroupMixed(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, clk := groupStore(t, d.open)
			sh := seed(t, s, 100)
			clk.Advance(time.Minute)
			now := clk.Now()

			var writes []shadow.Write
			add := func(op shadow.WriteOp, x *shadow.Shadow) {
				writes = append(writes, shadow.Write{Op: op, Shadow: x})
			}
			// Plain updates, creates and deletes, interleaved.
			for i := range 40 {
				sh[i].Attributes["mail"] = []string{fmt.Sprintf("m%d@example.org", i)}
				if i%2 == 0 {
					// The update sets what the caller did not know.
					sh[i].CreatedAt, sh[i].UpdatedAt = time.Time{}, time.Time{}
				}
				add(shadow.WriteUpdate, sh[i])
				add(shadow.WriteCreate, groupShadow(fmt.Sprintf("n%03d", i), fmt.Sprintf("new%03d", i)))
				if i < 10 {
					add(shadow.WriteDelete, sh[50+i])
				}
			}
			// One shadow created, then updated twice.
			twice := groupShadow("", "twice")
			add(shadow.WriteCreate, twice)
			add(shadow.WriteUpdate, twice)
			add(shadow.WriteUpdate, twice)
			// An ID deleted and created again.
			add(shadow.WriteDelete, sh[61])
			add(shadow.WriteCreate, groupShadow("g061", "reborn"))
			// A shadow updated twice through two copies.
			first, second := sh[62], sh[62].Clone()
			first.Attributes["mail"] = []string{"first@example.org"}
			second.Version++
			second.Attributes["mail"] = []string{"second@example.org"}
			add(shadow.WriteUpdate, first)
			add(shadow.WriteUpdate, second)
			// A shadow created and deleted.
			gone := groupShadow("gone", "gone")
			add(shadow.WriteCreate, gone)
			add(shadow.WriteDelete, gone)

			retries := s.bulkRetries.Load()
			if err := s.CommitGroup(ctx, writes, groupKey, "t0", "t1", nil); err != nil {
				t.Fatalf("CommitGroup: %v", err)
			}
			if n := s.bulkRetries.Load() - retries; n != 0 {
				t.Errorf("the group was run again a write at a time %d times, want 0", n)
			}
			if tok, _, err := s.LoadToken(ctx, groupKey); err != nil || tok != "t1" {
				t.Fatalf("token: %q, %v; want t1", tok, err)
			}

			// The callers' shadows carry the stored state.
			for i, w := range writes {
				if w.Op == shadow.WriteDelete {
					continue
				}
				if w.Shadow == twice && i != len(writes)-1 && writes[i+1].Shadow == twice {
					continue // checked at its last write
				}
				if w.Shadow == first || w.Shadow == gone {
					continue
				}
				got, err := s.Get(ctx, w.Shadow.ID)
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				c := w.Shadow
				if got.Version != c.Version || !got.CreatedAt.Equal(c.CreatedAt) || !got.UpdatedAt.Equal(c.UpdatedAt) ||
					got.UID != c.UID || got.Dead != c.Dead || got.Attributes.Get("mail") != c.Attributes.Get("mail") {
					t.Fatalf("write %d: stored %s version %d created %v updated %v UID %q dead %v mail %q; caller has version %d created %v updated %v UID %q dead %v mail %q",
						i, got.ID, got.Version, got.CreatedAt, got.UpdatedAt, got.UID, got.Dead, got.Attributes.Get("mail"),
						c.Version, c.CreatedAt, c.UpdatedAt, c.UID, c.Dead, c.Attributes.Get("mail"))
				}
				if !c.UpdatedAt.Equal(truncate(now)) {
					t.Fatalf("write %d: UpdatedAt %v, want %v", i, c.UpdatedAt, truncate(now))
				}
				wantCreated := truncate(now)
				if w.Op == shadow.WriteUpdate && c != twice {
					wantCreated = truncate(t0)
				}
				if !c.CreatedAt.Equal(wantCreated) {
					t.Fatalf("write %d (%s): CreatedAt %v, want %v", i, c.ID, c.CreatedAt, wantCreated)
				}
			}
			if twice.ID == "" || twice.Version != 3 {
				t.Fatalf("created-and-updated-twice shadow: ID %q, Version %d; want an ID and 3", twice.ID, twice.Version)
			}
			if first.Version != 2 || second.Version != 3 {
				t.Fatalf("copies updated in turn: versions %d, %d; want 2, 3", first.Version, second.Version)
			}
			if got, err := s.Get(ctx, "g062"); err != nil || got.Version != 3 || got.Attributes.Get("mail") != "second@example.org" {
				t.Fatalf("shadow updated twice: %+v, %v", got, err)
			}
			if got, err := s.Get(ctx, "g061"); err != nil || got.UID != "reborn" || got.Version != 1 {
				t.Fatalf("shadow deleted and created again: %+v, %v", got, err)
			}
			for _, id := range []string{"gone", "g050", "g059"} {
				if _, err := s.Get(ctx, id); !errors.Is(err, shadow.ErrNotFound) {
					t.Fatalf("Get(%s) after its delete: %v", id, err)
				}
			}
			if n, err := s.Count(ctx, shadow.Query{}); err != nil || n != 100+40+1-10 {
				t.Fatalf("Count: %d, %v; want %d", n, err, 100+40+1-10)
			}
		})
	}
}

// TestGroupIdentityOrder: writes that move a live identity between
// shadows succeed exactly when they would one at a time, in their order.
// On PostgreSQL also with merge joins only, under which a multi-row update
// reaches its rows in ID order, not in the writes' order.
func TestGroupIdentityOrder(t *testing.T) {
	t.Parallel()
	cases := append(dialects[:len(dialects):len(dialects)], struct {
		name string
		open func(t testing.TB, clk connector.Clock) *Store
	}{"postgres-merge-join", func(t testing.TB, clk connector.Clock) *Store {
		t.Helper()
		dsn := withSessionParams(testsvc.PostgresDSN(t), "enable_nestloop", "off", "enable_hashjoin", "off")
		s, err := OpenPostgres(context.Background(), dsn, Options{Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}})
	for _, d := range cases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := groupStore(t, d.open)
			sh := seed(t, s, 4)
			before, err := s.List(ctx, shadow.Query{})
			if err != nil {
				t.Fatal(err)
			}

			// g001 takes u000 before g000 gives it up: refused, as the
			// first write alone would be.
			sh[1].UID, sh[0].UID = "u000", "moved"
			writes := []shadow.Write{{Op: shadow.WriteUpdate, Shadow: sh[1]}, {Op: shadow.WriteUpdate, Shadow: sh[0]}}
			was := callers(writes)
			err = s.CommitGroup(ctx, writes, groupKey, "t0", "t1", nil)
			wantGroupFailed(t, s, err, shadow.ErrDuplicate, 0, 2, "g001", before, writes, was)

			// The same the other way round succeeds.
			writes[0], writes[1] = writes[1], writes[0]
			if err := s.CommitGroup(ctx, writes, groupKey, "t0", "t1", nil); err != nil {
				t.Fatalf("CommitGroup freeing an identity, then taking it: %v", err)
			}
			if live, err := shadow.FindLive(ctx, s, "r1", "account", connector.Identifiers{UID: "u000"}); err != nil || live == nil || live.ID != "g001" {
				t.Fatalf("live shadow of u000: %+v, %v; want g001", live, err)
			}

			// Two shadows swapping identities fail, whatever the order.
			sh[2].UID, sh[3].UID = "u003", "u002"
			err = s.Apply(ctx, []shadow.Write{{Op: shadow.WriteUpdate, Shadow: sh[3]}, {Op: shadow.WriteUpdate, Shadow: sh[2]}})
			if !errors.Is(err, shadow.ErrDuplicate) || !strings.Contains(err.Error(), `write 0 of 2: shadow "g003"`) {
				t.Fatalf("Apply swapping identities: %v, want ErrDuplicate naming write 0, g003", err)
			}

			// A create taking an identity before its holder is marked
			// dead fails; after, it succeeds.
			holder, err := s.Get(ctx, "g002")
			if err != nil {
				t.Fatal(err)
			}
			holder.Dead = true
			err = s.Apply(ctx, []shadow.Write{{Op: shadow.WriteCreate, Shadow: groupShadow("early", "u002")}, {Op: shadow.WriteUpdate, Shadow: holder}})
			if !errors.Is(err, shadow.ErrDuplicate) || !strings.Contains(err.Error(), `write 0 of 2: shadow "early"`) {
				t.Fatalf("Apply creating a held identity, then freeing it: %v, want ErrDuplicate naming write 0, early", err)
			}
			if err := s.Apply(ctx, []shadow.Write{{Op: shadow.WriteUpdate, Shadow: holder}, {Op: shadow.WriteCreate, Shadow: groupShadow("heir", "u002")}}); err != nil {
				t.Fatalf("Apply freeing an identity, then creating it: %v", err)
			}
			if live, err := shadow.FindLive(ctx, s, "r1", "account", connector.Identifiers{UID: "u002"}); err != nil || live == nil || live.ID != "heir" {
				t.Fatalf("live shadow of u002: %+v, %v; want heir", live, err)
			}
		})
	}
}

// withSessionParams adds PostgreSQL session parameters (name, value, ...)
// to dsn, a URL or key=value DSN.
func withSessionParams(dsn string, kv ...string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			for i := 0; i < len(kv); i += 2 {
				q.Set(kv[i], kv[i+1])
			}
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	for i := 0; i < len(kv); i += 2 {
		dsn += " " + kv[i] + "=" + kv[i+1]
	}
	return dsn
}

// TestGroupCancelled: a group whose context ends is not written and is not
// run again a write at a time.
func TestGroupCancelled(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s, _ := groupStore(t, d.open)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			writes := []shadow.Write{{Op: shadow.WriteCreate, Shadow: groupShadow("", "a")}, {Op: shadow.WriteCreate, Shadow: groupShadow("", "b")}}
			err := s.CommitGroup(ctx, writes, groupKey, "t0", "t1", nil)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("CommitGroup with a cancelled context: %v", err)
			}
			if writes[0].Shadow.ID != "" || writes[1].Shadow.Version != 0 {
				t.Fatalf("cancelled group changed the callers' shadows: %+v", writes[0].Shadow)
			}
			if n := s.bulkRetries.Load(); n != 0 {
				t.Fatalf("cancelled group was run again %d times", n)
			}
		})
	}
}

// TestGroupUpdateEveryColumn: an update in a group changing any one field
// of a shadow stores it, with its derived columns (on SQLite a modify that
// keeps the indexed columns takes another statement than one that does
// not).
func TestGroupUpdateEveryColumn(t *testing.T) {
	t.Parallel()
	at := t0.Truncate(time.Microsecond) // as the store keeps it
	later := at.Add(time.Hour)
	retry := func(at time.Time, typ shadow.OpType) shadow.PendingOperation {
		return shadow.PendingOperation{ID: 1, Type: typ, Status: shadow.StatusPendingExecution, Result: shadow.ResultInProgress,
			Delta: connector.Delta{Type: connector.DeltaModify}, RequestedAt: at}
	}
	cases := []struct {
		name string
		// from is the pending operation the shadow is created with
		// (a retry when zero).
		from   shadow.OpType
		change func(sh *shadow.Shadow)
	}{
		{"Attributes", 0, func(sh *shadow.Shadow) { sh.Attributes["mail"] = []string{"other@example.org"} }},
		{"ResourceID", 0, func(sh *shadow.Shadow) { sh.ResourceID = "r2" }},
		{"Class", 0, func(sh *shadow.Shadow) { sh.Class = "group" }},
		{"UID", 0, func(sh *shadow.Shadow) { sh.UID = "other" }},
		{"Name", 0, func(sh *shadow.Shadow) { sh.Name = "other" }},
		{"Exists", 0, func(sh *shadow.Shadow) { sh.Exists = false }},
		{"Dead", 0, func(sh *shadow.Shadow) { sh.Dead = true }},
		{"DeadSince", 0, func(sh *shadow.Shadow) { sh.DeadSince = later }},
		{"NextDue", 0, func(sh *shadow.Shadow) { sh.NextDue = later }},
		{"NeedsReconciliation", 0, func(sh *shadow.Shadow) { sh.NeedsReconciliation = false }},
		{"ReconciledAt", 0, func(sh *shadow.Shadow) { sh.ReconciledAt = later }},
		{"Kind", 0, func(sh *shadow.Shadow) { sh.Kind = "other" }},
		{"Intent", 0, func(sh *shadow.Shadow) { sh.Intent = "other" }},
		{"Origin", 0, func(sh *shadow.Shadow) { sh.Origin = shadow.OriginAssigned }},
		{"PendingNone", 0, func(sh *shadow.Shadow) { sh.Pending = nil }},
		{"PendingRetryMoved", 0, func(sh *shadow.Shadow) { sh.Pending = []shadow.PendingOperation{retry(later, shadow.OpRetry)} }},
		{"PendingCompleted", 0, func(sh *shadow.Shadow) {
			sh.Pending[0].Status, sh.Pending[0].Result = shadow.StatusCompleted, shadow.ResultSuccess
		}},
		{"PendingGrouped", 0, func(sh *shadow.Shadow) { sh.Pending = []shadow.PendingOperation{retry(at, shadow.OpGrouped)} }},
		{"PendingAsync", 0, func(sh *shadow.Shadow) { sh.Pending = []shadow.PendingOperation{retry(at, shadow.OpAsync)} }},
		{"PendingGroupedMoved", shadow.OpGrouped, func(sh *shadow.Shadow) { sh.Pending[0].RequestedAt = later }},
		{"PendingAsyncMoved", shadow.OpAsync, func(sh *shadow.Shadow) { sh.Pending[0].RequestedAt = later }},
	}
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := groupStore(t, d.open)
			filler := groupShadow("filler", "filler")
			if err := s.Create(ctx, filler); err != nil {
				t.Fatal(err)
			}
			for i, c := range cases {
				sh := groupShadow(fmt.Sprintf("c%02d", i), fmt.Sprintf("u%02d", i))
				sh.DeadSince, sh.NextDue, sh.NeedsReconciliation, sh.ReconciledAt = at, at, true, at
				sh.Kind, sh.Intent = "kind", "intent"
				from := c.from
				if from == 0 {
					from = shadow.OpRetry
				}
				sh.Pending = []shadow.PendingOperation{retry(at, from)}
				if err := s.Create(ctx, sh); err != nil {
					t.Fatal(err)
				}
				c.change(sh)
				writes := []shadow.Write{{Op: shadow.WriteUpdate, Shadow: sh}, {Op: shadow.WriteUpdate, Shadow: filler}}
				if err := s.Apply(ctx, writes); err != nil {
					t.Fatalf("%s: Apply: %v", c.name, err)
				}
				got, err := s.Get(ctx, sh.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Version != 2 || got.Attributes.Get("mail") != sh.Attributes.Get("mail") || len(got.Pending) != len(sh.Pending) ||
					(len(sh.Pending) > 0 && (got.Pending[0].Status != sh.Pending[0].Status || got.Pending[0].Type != sh.Pending[0].Type ||
						!got.Pending[0].RequestedAt.Equal(sh.Pending[0].RequestedAt))) {
					t.Fatalf("%s: stored %+v, want %+v", c.name, got, sh)
				}
				want, err := shadowArgs(sh)
				if err != nil {
					t.Fatal(err)
				}
				stored := storedColumns(t, s, sh.ID)
				for j, name := range shadowArgNames {
					if name == "attributes" || name == "pending" {
						continue // compared above: PostgreSQL reformats JSON
					}
					if fmt.Sprint(stored[j]) != fmt.Sprint(normal(want[j])) {
						t.Errorf("%s: column %s stored as %v, want %v", c.name, name, stored[j], normal(want[j]))
					}
				}
			}
		})
	}
}

// shadowArgNames are the columns of shadowArgs, in its order.
var shadowArgNames = []string{"resource_id", "class", "kind", "intent", "uid", "name", "attributes", "obj_exists", "dead",
	"dead_since", "origin", "pending", "next_due", "needs_recon", "has_unfinished", "oldest_unfinished", "oldest_retry",
	"oldest_grouped", "oldest_async", "reconciled_at"}

// storedColumns reads shadowArgNames of the stored shadow id, normalized
// as normal does.
func storedColumns(t *testing.T, s *Store, id string) []any {
	t.Helper()
	vals := make([]any, len(shadowArgNames))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := s.rdb.QueryRowContext(context.Background(), s.sql(`SELECT `+strings.Join(shadowArgNames, ", ")+` FROM {t}shadows WHERE id = $1`), id).Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		vals[i] = normal(v)
	}
	return vals
}

// normal maps a column value to one form for both drivers: booleans to
// 0 and 1, integers to int64, bytes to string.
func normal(v any) any {
	switch v := v.(type) {
	case bool:
		if v {
			return int64(1)
		}
		return int64(0)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case []byte:
		return string(v)
	}
	return v
}

// TestNewIDAscends: generated IDs are distinct, ascend (so that creates
// append to the ID-ordered indexes) and keep their length.
func TestNewIDAscends(t *testing.T) {
	prev := newID()
	seen := map[string]bool{prev: true}
	for range 10000 {
		id := newID()
		if len(id) != 24 || id <= prev || seen[id] {
			t.Fatalf("newID after %q returned %q: want 24 hex digits, greater, new", prev, id)
		}
		seen[id] = true
		prev = id
	}
}
