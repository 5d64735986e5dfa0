package livesync_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

// countingStore is groupStore counting the lookups live sync makes: List
// calls and FindByIdentifiers calls (which fail with findErr when set).
type countingStore struct {
	*groupStore
	cmu          sync.Mutex
	lists, finds int
	findSizes    []int
	findErr      error
}

func newCountingStore(b *bundle) *countingStore {
	b.tokens = b.fake
	return &countingStore{groupStore: &groupStore{Store: b.store, tokens: b.fake}}
}

func (c *countingStore) List(ctx context.Context, q shadow.Query) ([]*shadow.Shadow, error) {
	c.cmu.Lock()
	c.lists++
	c.cmu.Unlock()
	return c.groupStore.List(ctx, q)
}

func (c *countingStore) FindByIdentifiers(ctx context.Context, res string, cl connector.ObjectClass, uids, names []string) ([]*shadow.Shadow, error) {
	c.cmu.Lock()
	c.finds++
	c.findSizes = append(c.findSizes, len(uids)+len(names))
	err := c.findErr
	c.cmu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.groupStore.FindByIdentifiers(ctx, res, cl, uids, names)
}

// counts returns and resets the counters.
func (c *countingStore) counts() (lists, finds int) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	lists, finds = c.lists, c.finds
	c.lists, c.finds = 0, 0
	return lists, finds
}

// groupCommitStore is what live sync needs for group commits, without
// shadow.IdentifierFinder.
type groupCommitStore interface {
	shadow.Store
	livesync.GroupCommitter
}

// noFinder hides the store's FindByIdentifiers: live sync correlates each
// change with its own queries, as before the prefetch.
type noFinder struct{ groupCommitStore }

// A group's changes are correlated with one FindByIdentifiers and no List:
// creates, modifies, renames and deletes within a group and across groups,
// in two runs; the shadows mirror the resource after each. Without the
// finder the same stream costs List calls.
func TestPrefetchOneQueryPerGroup(t *testing.T) {
	t.Parallel()
	for _, finder := range []bool{true, false} {
		b := setup(t, memconn.Options{PreciseTokens: true})
		cs := newCountingStore(b)
		task := b.task(t, func(c *livesync.Config) {
			c.GroupCommit = 4
			c.Store = cs
			if !finder {
				c.Store = noFinder{cs}
			}
		})
		mustRun(t, task)
		ids := b.stream(t, 6)             // 1..6: o0..o5
		b.modify(t, ids[0].UID, "a", "1") // 7
		b.modify(t, ids[1].UID, "uid", "renamed")
		if err := b.conn.Remove(class, ids[2].UID); err != nil { // 9
			t.Fatal(err)
		}
		b.modify(t, ids[3].UID, "a", "3") // 10
		cs.counts()
		if res := mustRun(t, task); res.Processed != 10 {
			t.Fatalf("finder=%v: first run %+v", finder, res)
		}
		lists, finds := cs.counts()
		b.assertMirror(t)
		if finder && (finds != 3 || lists != 0) {
			t.Fatalf("10 changes in groups of 4: %d FindByIdentifiers and %d List calls, want 3 and 0", finds, lists)
		}
		if !finder && (finds != 0 || lists < 10) {
			t.Fatalf("without the finder: %d FindByIdentifiers and %d List calls, want 0 and one or more per change", finds, lists)
		}

		// Across the groups of a second run: a change of an object
		// whose shadow the previous group of the same run wrote.
		b.modify(t, ids[0].UID, "a", "2")                        // 11
		b.modify(t, ids[1].UID, "uid", "again")                  // 12
		if err := b.conn.Remove(class, ids[4].UID); err != nil { // 13
			t.Fatal(err)
		}
		p := b.put(t, "p0")                       // 14: next group
		b.modify(t, ids[0].UID, "uid", "o0-late") // 15
		b.modify(t, p.UID, "a", "p")              // 16
		b.rec.take()
		if res := mustRun(t, task); res.Processed != 6 {
			t.Fatalf("finder=%v: second run %+v", finder, res)
		}
		lists, finds = cs.counts()
		b.assertMirror(t)
		if finder && (finds != 2 || lists != 0) {
			t.Fatalf("6 changes in groups of 4: %d FindByIdentifiers and %d List calls, want 2 and 0", finds, lists)
		}
		evs := b.rec.take()
		if evs[0].Before.Attributes.Get("a") != "1" || evs[1].Before.Name != "renamed" || evs[1].After.Name != "again" ||
			evs[2].After == nil || !evs[2].After.Dead || evs[3].Before != nil ||
			evs[4].Before.Attributes.Get("a") != "2" || evs[5].Before.Name != "p0" {
			t.Fatalf("finder=%v: events do not see the earlier groups' writes: %s", finder, describeEvents(evs))
		}
	}
}

// The prefetch makes exactly the decisions the per-change lookups make,
// with shadows that test every rule of correlation: a shadow by UID that
// does not exist, shadows by Name of another UID or whose add was never
// sent, a name shared by more shadows than correlation reads, objects known
// by name only and renamed (found by the old name), a new object taking a
// renamed one's name in the same group, changes without attributes (a Get
// decides their identifiers), and a handler that modifies the shadows it
// is given. The events and the stored shadows are the same with
// and without the finder.
func TestPrefetchSameDecisions(t *testing.T) {
	t.Parallel()
	for _, group := range []int{2, 3, 5, 100} {
		t.Run(fmt.Sprint(group), func(t *testing.T) {
			t.Parallel()
			with, lists := correlationScenario(t, group, true)
			without, _ := correlationScenario(t, group, false)
			// Erin's changes (without attributes) ask the store, and
			// so does a group replayed after its commit met a
			// conflict (the new ivy correlates to the old one's
			// stored shadow, as without the finder).
			t.Logf("group %d: %d List calls with the finder", group, lists)
			if !slices.Equal(with, without) {
				t.Fatalf("group %d: with the finder\n%s\nwithout\n%s", group, strings.Join(with, "\n"), strings.Join(without, "\n"))
			}
		})
	}
}

// noObject drops the attributes of the changes of objects named erin: the
// engine Gets them.
type noObject struct{ *memconn.Conn }

func (n noObject) FetchChanges(ctx context.Context, cl connector.ObjectClass, from connector.Token, max int) (connector.ChangeBatch, error) {
	b, err := n.Conn.FetchChanges(ctx, cl, from, max)
	for i := range b.Changes {
		if strings.HasPrefix(b.Changes[i].ID.Name, "erin") && b.Changes[i].Type != connector.ChangeDelete {
			b.Changes[i].Object = nil
		}
	}
	return b, err
}

// correlationScenario runs the stream of TestPrefetchSameDecisions and
// returns a description of every event and of the stored shadows at the
// end (without the store's IDs and times), and the List calls made.
func correlationScenario(t *testing.T, group int, finder bool) ([]string, int) {
	t.Helper()
	ctx := context.Background()
	b := setup(t, memconn.Options{PreciseTokens: true, MaxFetch: 7})
	cs := newCountingStore(b)
	var out []string
	task := b.task(t, func(c *livesync.Config) {
		c.GroupCommit = group
		c.Connector = noObject{b.conn}
		c.Store = cs
		if !finder {
			c.Store = noFinder{cs}
		}
		c.Handler = func(_ context.Context, ev livesync.Event) error {
			out = append(out, fmt.Sprintf("%s %s/%s old %q: %s -> %s", ev.Change.Type, ev.Change.ID.UID, ev.Change.ID.Name,
				ev.Change.OldName, describeShadow(ev.Before), describeShadow(ev.After)))
			// The events' shadows are the handler's.
			for _, sh := range []*shadow.Shadow{ev.Before, ev.After} {
				if sh != nil {
					sh.UID, sh.Name, sh.Exists, sh.Pending = "mangled", "mangled", false, nil
				}
			}
			return nil
		}
	})
	// Known to the store by their names only, from before the stream.
	hank := b.put(t, "hank")
	ivy := b.put(t, "ivy")
	mustRun(t, task)

	unsentAdd := []shadow.PendingOperation{{ID: 1, Type: shadow.OpRetry, Status: shadow.StatusPendingExecution,
		Result: shadow.ResultInProgress, Delta: connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"x": {"1"}}},
		RequestedAt: t0}}
	sentAdd := slices.Clone(unsentAdd)
	sentAdd[0].Status = shadow.StatusExecuting
	seed := func(id, uid, name string, exists bool, pending []shadow.PendingOperation) {
		t.Helper()
		sh := &shadow.Shadow{ID: id, ResourceID: "res", Class: class, UID: uid, Name: name, Exists: exists,
			Origin: shadow.OriginAssigned, Pending: slices.Clone(pending), Attributes: connector.Attributes{"seeded": {id}}}
		if err := b.store.Create(ctx, sh); err != nil {
			t.Fatal(err)
		}
	}
	carol := b.put(t, "carol")
	dave := b.put(t, "dave")
	erin := b.put(t, "erin")
	frank := b.put(t, "frank")
	b.put(t, "gina")
	gus := b.put(t, "gus")
	seed("s-carol", "", "carol", false, unsentAdd) // never sent: not carol's
	seed("s-dave", "", "dave", false, sentAdd)     // sent: may be dave's
	seed("s-erin-ghost", erin.UID, "erin-old", false, nil)
	seed("s-gus-ghost", gus.UID, "gus-old", false, nil) // by UID but not existing
	seed("s-frank", "u-other", "frank", true, nil)      // another object's
	for i := range 4 {
		seed(fmt.Sprintf("s-gina%d", i), "", "gina", false, unsentAdd)
	}
	seed("s-gina9", "", "gina", true, nil) // beyond what correlation reads
	seed("s-hank", "", "hank", true, nil)
	seed("s-ivy", "", "ivy", true, nil)
	for _, id := range []string{"s-hank", "s-ivy"} {
		// Discovered before: live sync keeps the origin.
		sh, err := b.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		sh.Origin = shadow.OriginDiscovered
		if err := b.store.Update(ctx, sh); err != nil {
			t.Fatal(err)
		}
	}

	b.modify(t, erin.UID, "mail", "e")
	b.modify(t, hank.UID, "uid", "henry")
	b.modify(t, ivy.UID, "uid", "ivy2")
	if err := b.conn.Remove(class, dave.UID); err != nil {
		t.Fatal(err)
	}
	b.modify(t, carol.UID, "mail", "c")
	b.modify(t, erin.UID, "uid", "erin2")
	b.put(t, "ivy") // a new object with ivy's old name
	if err := b.conn.Remove(class, frank.UID); err != nil {
		t.Fatal(err)
	}
	b.modify(t, carol.UID, "uid", "carol2")
	b.modify(t, carol.UID, "uid", "carol")
	b.modify(t, gus.UID, "mail", "g")
	if res := mustRun(t, task); res.Processed != 17 {
		t.Fatalf("finder=%v group=%d: %+v", finder, group, res)
	}
	lists, _ := cs.counts()
	all, err := b.store.List(ctx, shadow.Query{})
	if err != nil {
		t.Fatal(err)
	}
	// The objects' shadows mirror them; the seeded shadows that are not
	// the objects' (frank's of another UID, gina's) stay as they were.
	live := map[string]*shadow.Shadow{}
	for _, sh := range all {
		if sh.Live() && sh.UID != "" && sh.UID != "u-other" {
			live[sh.UID] = sh
		}
	}
	assertMirror(t, live, b.conn.Objects(class))
	var stored []string
	for _, sh := range all {
		stored = append(stored, "stored: "+describeShadow(sh))
	}
	slices.Sort(stored)
	return append(out, stored...), lists
}

// describeShadow describes sh without its ID, version and times, which
// differ from store to store.
func describeShadow(sh *shadow.Shadow) string {
	if sh == nil {
		return "none"
	}
	return fmt.Sprintf("{%s/%s exists=%v dead=%v origin=%s pending=%d attrs=%v}", sh.UID, sh.Name, sh.Exists, sh.Dead,
		sh.Origin, len(sh.Pending), sh.Attributes)
}

func describeEvents(evs []livesync.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n%s %s: %s -> %s", ev.Change.Type, ev.Change.ID.Name, describeShadow(ev.Before), describeShadow(ev.After))
	}
	return b.String()
}

// A failed group lookup is no failed run: the group's changes are
// correlated one by one.
func TestPrefetchFailureFallsBack(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	cs := newCountingStore(b)
	task := b.task(t, func(c *livesync.Config) {
		c.GroupCommit = 3
		c.Store = cs
	})
	mustRun(t, task)
	ids := b.stream(t, 4)
	b.modify(t, ids[0].UID, "a", "1")
	b.modify(t, ids[1].UID, "uid", "renamed")
	cs.findErr = errors.New("store unreachable")
	res := mustRun(t, task)
	lists, finds := cs.counts()
	if res.Processed != 6 || finds != 2 || lists < 6 {
		t.Fatalf("%+v: %d FindByIdentifiers and %d List calls, want 2 and one or more per change", res, finds, lists)
	}
	b.assertMirror(t)
}

// A group's lookup asks for the identifiers of the group's changes, each
// once, and for no change of the next group.
func TestPrefetchLooksUpTheGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	cs := newCountingStore(b)
	task := b.task(t, func(c *livesync.Config) {
		c.GroupCommit = 5
		c.Store = cs
	})
	mustRun(t, task)
	ids := b.stream(t, 3)                    // 3 UIDs, 3 names
	b.modify(t, ids[0].UID, "a", "1")        // nothing new
	b.modify(t, ids[1].UID, "uid", "o1-new") // a name; group ends
	b.stream2(t, "q", 2)                     // next group: 2 UIDs, 2 names
	if res := mustRun(t, task); res.Processed != 7 {
		t.Fatalf("%+v", res)
	}
	if want := []int{7, 4}; !slices.Equal(cs.findSizes, want) {
		t.Fatalf("identifiers looked up per group: %v, want %v", cs.findSizes, want)
	}
	b.assertMirror(t)
}
