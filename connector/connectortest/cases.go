package connectortest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

func testAddGet(s *suite) {
	a, name := s.attrs()
	id := s.mustAdd(a)
	o := s.mustGet(connector.Identifiers{UID: id.UID})
	if o.ID.Name != id.Name {
		s.t.Errorf("Get by UID returned Name %q; Add returned %q", o.ID.Name, id.Name)
	}
	s.wantAttrs("Get after Add", o.Attributes, a)
	if got := o.Attributes.Get(s.h.NamingAttribute); got != name {
		s.t.Errorf("naming attribute = %q; want %q", got, name)
	}
	byName := s.mustGet(connector.Identifiers{Name: id.Name})
	if byName.ID.UID != id.UID {
		s.t.Errorf("Get by Name %q returned UID %q; want %q", id.Name, byName.ID.UID, id.UID)
	}
	// The connector must not keep a reference to the caller's map, nor
	// hand out its own.
	a[s.h.ModifiableAttribute] = []string{"changed by the caller"}
	o.Attributes[s.h.NamingAttribute] = []string{"changed by the reader"}
	again := s.mustGet(connector.Identifiers{UID: id.UID})
	if again.Attributes.Get(s.h.NamingAttribute) != name || again.Attributes.Get(s.h.ModifiableAttribute) == "changed by the caller" {
		s.t.Errorf("the object changed when the caller changed the maps it passed or got: %v", again.Attributes)
	}
}

func testAddDuplicate(s *suite) {
	a, _ := s.attrs()
	id := s.mustAdd(a)
	dup := a.Clone()
	dup[s.h.ModifiableAttribute] = []string{"another"}
	_, err := s.add(dup)
	s.wantCategory("Add of a taken name", err, connector.CategoryAlreadyExists)
	var ce *connector.Error
	if errors.As(err, &ce) && ce.Existing != nil && ce.Existing.UID != "" && ce.Existing.UID != id.UID {
		s.t.Errorf("Error.Existing = %+v; want UID %q", *ce.Existing, id.UID)
	}
	if o := s.mustGet(connector.Identifiers{UID: id.UID}); !(connector.Attributes{"x": o.Attributes[s.h.ModifiableAttribute]}).Equal(connector.Attributes{"x": a[s.h.ModifiableAttribute]}) {
		s.t.Errorf("the failed Add changed the existing object: %q = %q", s.h.ModifiableAttribute, o.Attributes[s.h.ModifiableAttribute])
	}
}

func testAddWithoutNaming(s *suite) {
	a, _ := s.attrs()
	delete(a, s.h.NamingAttribute)
	_, err := s.add(a)
	if err == nil {
		s.t.Fatalf("Add without naming attribute %q succeeded", s.h.NamingAttribute)
	}
	if c := connector.Classify(err); c.Communication() || c == connector.CategoryThrottled {
		s.t.Errorf("Add without naming attribute: error %v has category %s; want a permanent one", err, c)
	}
}

func testModifyValues(s *suite) {
	a, _ := s.attrs()
	id := s.mustAdd(a)
	attr := s.h.MultiValuedAttribute
	multi := attr != ""
	if !multi {
		attr = s.h.ModifiableAttribute
	}
	state := s.mustGet(id).Attributes
	step := func(what string, changes ...connector.AttributeDelta) {
		s.t.Helper()
		want := connector.ApplyChanges(state, changes)
		nid := s.mustModify(id, changes...)
		if nid.Name != id.Name && nid.Name != "" {
			s.t.Errorf("%s: Modify renamed the object from %q to %q", what, id.Name, nid.Name)
		}
		state = s.mustGet(id).Attributes
		s.wantAttrs(what, state, connector.Attributes{attr: want[attr], s.h.ModifiableAttribute: want[s.h.ModifiableAttribute]})
		s.wantAttrs(what+" (other attributes)", state, connector.Attributes{s.h.NamingAttribute: a[s.h.NamingAttribute]})
	}
	step("replace", connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{"replaced " + uniq()}})
	if multi {
		step("add values", connector.AttributeDelta{Op: connector.AddValues, Name: attr, Values: []string{"v1-" + uniq(), "v2-" + uniq()}})
		step("add one more value", connector.AttributeDelta{Op: connector.AddValues, Name: attr, Values: []string{"v3-" + uniq()}})
		vals := state[attr]
		if len(vals) < 3 {
			s.t.Fatalf("after adding three values %q has %q", attr, vals)
		}
		step("delete a value", connector.AttributeDelta{Op: connector.DeleteValues, Name: attr, Values: []string{vals[1]}})
		step("replace all values", connector.AttributeDelta{Op: connector.Replace, Name: attr, Values: []string{"r1-" + uniq(), "r2-" + uniq()}})
		step("two changes in one modify",
			connector.AttributeDelta{Op: connector.AddValues, Name: attr, Values: []string{"w-" + uniq()}},
			connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{"second " + uniq()}})
	} else {
		step("add a value to an absent attribute",
			connector.AttributeDelta{Op: connector.Replace, Name: attr},
			connector.AttributeDelta{Op: connector.AddValues, Name: attr, Values: []string{"added " + uniq()}})
	}
	step("delete the value", connector.AttributeDelta{Op: connector.DeleteValues, Name: s.h.ModifiableAttribute, Values: state[s.h.ModifiableAttribute]})
	if len(state[s.h.ModifiableAttribute]) != 0 {
		s.t.Errorf("after deleting its value %q = %q", s.h.ModifiableAttribute, state[s.h.ModifiableAttribute])
	}
	step("set again", connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{"again " + uniq()}})
	step("remove by empty replace", connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute})
	if len(state[s.h.ModifiableAttribute]) != 0 {
		s.t.Errorf("after an empty replace %q = %q", s.h.ModifiableAttribute, state[s.h.ModifiableAttribute])
	}
	// Modify by Name alone.
	v := "by name " + uniq()
	s.mustModify(connector.Identifiers{Name: id.Name}, connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{v}})
	if got := s.mustGet(id).Attributes.Get(s.h.ModifiableAttribute); got != v {
		s.t.Errorf("after Modify by Name %q = %q; want %q", s.h.ModifiableAttribute, got, v)
	}
}

func testMissing(s *suite) {
	a, _ := s.attrs()
	id := s.mustAdd(a)
	s.mustDelete(id)
	for _, ref := range []connector.Identifiers{id, {UID: id.UID}, {Name: id.Name}} {
		_, err := s.c.Get(s.ctx, s.h.Class, ref)
		s.wantCategory("Get of a deleted object", err, connector.CategoryNotFound)
		_, err = s.modify(ref, connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{"x"}})
		s.wantCategory("Modify of a deleted object", err, connector.CategoryNotFound)
		err = s.delete(ref)
		s.wantCategory("Delete of a deleted object", err, connector.CategoryNotFound)
	}
	// A failed modify must not bring the object back.
	_, err := s.c.Get(s.ctx, s.h.Class, connector.Identifiers{UID: id.UID})
	s.wantCategory("Get after failed modifies", err, connector.CategoryNotFound)
}

func testDeleteThenGet(s *suite) {
	a, _ := s.attrs()
	keep, _ := s.attrs()
	id := s.mustAdd(a)
	kid := s.mustAdd(keep)
	s.mustDelete(connector.Identifiers{UID: id.UID})
	_, err := s.c.Get(s.ctx, s.h.Class, id)
	s.wantCategory("Get after Delete", err, connector.CategoryNotFound)
	s.mustGet(kid) // the other object is untouched
	// The name is free again.
	nid := s.mustAdd(a)
	if nid.UID == id.UID {
		s.t.Logf("note: the resource reused UID %q for a new object", id.UID)
	}
	s.mustGet(nid)
}

func testRename(s *suite) {
	a, _ := s.attrs()
	id := s.mustAdd(a)
	other, otherName := s.attrs()
	oid := s.mustAdd(other)
	_, newName := s.attrs() // a name nobody uses
	var token connector.Token
	ls, live := s.c.(connector.LiveSyncer)
	if live {
		var err error
		if token, err = ls.LatestToken(s.ctx, s.h.Class); err != nil {
			s.t.Fatalf("LatestToken: %v", err)
		}
	}
	nid := s.mustModify(id, connector.AttributeDelta{Op: connector.Replace, Name: s.h.NamingAttribute, Values: []string{newName}})
	if nid.UID != id.UID {
		s.t.Errorf("rename returned UID %q; want %q", nid.UID, id.UID)
	}
	if nid.Name == id.Name || nid.Name == "" {
		s.t.Fatalf("rename to %q returned Name %q; want a new Name (old %q)", newName, nid.Name, id.Name)
	}
	o := s.mustGet(connector.Identifiers{UID: id.UID})
	if got := o.Attributes.Get(s.h.NamingAttribute); got != newName {
		s.t.Errorf("after rename %q = %q; want %q", s.h.NamingAttribute, got, newName)
	}
	if o.ID.Name != nid.Name {
		s.t.Errorf("after rename Get returns Name %q; want %q", o.ID.Name, nid.Name)
	}
	s.mustGet(connector.Identifiers{Name: nid.Name})
	_, err := s.c.Get(s.ctx, s.h.Class, connector.Identifiers{Name: id.Name})
	s.wantCategory("Get by the old Name", err, connector.CategoryNotFound)
	if s.caps.Search {
		if got := s.searchName(nid.Name); len(got) != 1 || got[0].ID.UID != id.UID {
			s.t.Errorf("Search by the new Name found %v", uids(got))
		}
		if got := s.searchName(id.Name); len(got) != 0 {
			s.t.Errorf("Search by the old Name found %v", uids(got))
		}
	}
	// Renaming onto a taken name fails and changes nothing.
	_, err = s.modify(nid, connector.AttributeDelta{Op: connector.Replace, Name: s.h.NamingAttribute, Values: []string{otherName}})
	s.wantCategory("rename onto a taken name", err, connector.CategoryAlreadyExists)
	if got := s.mustGet(connector.Identifiers{UID: id.UID}).Attributes.Get(s.h.NamingAttribute); got != newName {
		s.t.Errorf("after a failed rename %q = %q; want %q", s.h.NamingAttribute, got, newName)
	}
	s.mustGet(oid)
	if live {
		changes := s.collect(token, func(chs []connector.Change) bool {
			return slices.ContainsFunc(chs, func(c connector.Change) bool { return c.ID.UID == id.UID })
		})
		for _, ch := range changes {
			if ch.ID.UID != id.UID {
				continue
			}
			if ch.ID.Name != nid.Name {
				s.t.Errorf("rename change has Name %q; want %q", ch.ID.Name, nid.Name)
			}
			if ch.OldName != "" && ch.OldName != id.Name {
				s.t.Errorf("rename change has OldName %q; want %q", ch.OldName, id.Name)
			}
		}
	}
}

func (s *suite) searchName(name string) []connector.Object {
	s.t.Helper()
	var out []connector.Object
	err := s.c.(connector.Searcher).Search(s.ctx, s.h.Class, connector.SearchOptions{Name: name}, func(o connector.Object) error {
		out = append(out, o)
		return nil
	})
	if err != nil {
		s.t.Fatalf("Search by Name %q: %v", name, err)
	}
	return out
}

func uids(objs []connector.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.ID.UID + " " + o.ID.Name
	}
	return out
}

func testSearch(s *suite) {
	a, _ := s.attrs()
	id := s.mustAdd(a)
	b, _ := s.attrs()
	bid := s.mustAdd(b)
	got := s.searchName(id.Name)
	if len(got) != 1 || got[0].ID.UID != id.UID {
		s.t.Fatalf("Search by Name %q found %v; want only %s", id.Name, uids(got), id.UID)
	}
	s.wantAttrs("Search by Name", got[0].Attributes, a)
	found := 0
	err := s.c.(connector.Searcher).Search(s.ctx, s.h.Class, connector.SearchOptions{}, func(o connector.Object) error {
		if o.ID.UID == id.UID || o.ID.UID == bid.UID {
			found++
		}
		return nil
	})
	if err != nil || found != 2 {
		s.t.Errorf("Search of all objects (connector's page size): %v, found %d of the 2 added", err, found)
	}
	s.mustDelete(bid)
	if got := s.searchName(bid.Name); len(got) != 0 {
		s.t.Errorf("Search by the Name of a deleted object found %v", uids(got))
	}
	// An error from fn stops the search and comes back.
	stop := errors.New("stop here")
	calls := 0
	err = s.c.(connector.Searcher).Search(s.ctx, s.h.Class, connector.SearchOptions{PageSize: 1}, func(connector.Object) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		s.t.Errorf("Search whose fn fails returned %v; want the fn's error", err)
	}
	if calls != 1 {
		s.t.Errorf("Search called fn %d times after it failed; want 1", calls)
	}
}

func testSearchPaging(s *suite) {
	const n, pageSize = 7, 3
	want := map[string]connector.Attributes{}
	for range n {
		a, _ := s.attrs()
		id := s.mustAdd(a)
		want[id.UID] = a
	}
	seen := map[string]int{}
	err := s.c.(connector.Searcher).Search(s.ctx, s.h.Class, connector.SearchOptions{PageSize: pageSize}, func(o connector.Object) error {
		if a, ok := want[o.ID.UID]; ok {
			seen[o.ID.UID]++
			s.wantAttrs("Search result", o.Attributes, a)
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("Search with PageSize %d: %v", pageSize, err)
	}
	for uid := range want {
		if seen[uid] != 1 {
			s.t.Errorf("Search with PageSize %d returned object %s %d times; want once", pageSize, uid, seen[uid])
		}
	}
}

// hostile are strings that break escaping: query languages, DNs, SQL, CSV.
var hostile = []string{
	`*)(uid=*`,
	`*`,
	`' OR 1=1 --`,
	`"; DROP TABLE accounts; --`,
	`a,b=c+d`,
	`"quoted"`,
	`back\slash\`,
	`semi;colon<angle>`,
	`#hash`,
	`percent%_under`,
	`(parens)`,
	`ünïcødé ✓`,
}

// hostileBytes need a resource that stores arbitrary bytes.
var hostileBytes = []string{
	"nul\x00byte",
	"ctl\x01\x1f\x7f",
	"bad utf8 \xff\xfe",
	"tab\tnew\nline\r",
}

func (s *suite) hostile() []string {
	if s.caps.ControlBytes {
		return append(slices.Clone(hostile), hostileBytes...)
	}
	return hostile
}

func testHostile(s *suite) {
	for _, h := range s.hostile() {
		a, name := s.attrs()
		hostName := h + name
		a[s.h.NamingAttribute] = []string{hostName}
		a[s.h.ModifiableAttribute] = []string{h}
		id := s.mustAdd(a)
		o := s.mustGet(connector.Identifiers{UID: id.UID})
		s.wantAttrs("hostile value "+quote(h), o.Attributes, a)
		if byName := s.mustGet(connector.Identifiers{Name: id.Name}); byName.ID.UID != id.UID {
			s.t.Errorf("Get by hostile Name %q returned %s", id.Name, byName.ID.UID)
		}
		v := "x" + h + "y"
		s.mustModify(id, connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{v}})
		if got := s.mustGet(id).Attributes[s.h.ModifiableAttribute]; len(got) != 1 || got[0] != v {
			s.t.Errorf("after Modify to %q: %q = %q", v, s.h.ModifiableAttribute, got)
		}
		if s.h.MultiValuedAttribute != "" {
			s.mustModify(id, connector.AttributeDelta{Op: connector.AddValues, Name: s.h.MultiValuedAttribute, Values: []string{h}})
			s.mustModify(id, connector.AttributeDelta{Op: connector.DeleteValues, Name: s.h.MultiValuedAttribute, Values: []string{h}})
			if got := s.mustGet(id).Attributes[s.h.MultiValuedAttribute]; slices.Contains(got, h) {
				s.t.Errorf("deleting value %q from %q left %q", h, s.h.MultiValuedAttribute, got)
			}
		}
		s.mustDelete(id)
	}
}

func quote(s string) string { return "`" + s + "`" }

func testHostileSearch(s *suite) {
	for _, h := range s.hostile() {
		base := uniq() + "-"
		named := func(n string) connector.Identifiers {
			a, _ := s.attrs()
			a[s.h.NamingAttribute] = []string{n}
			return s.mustAdd(a)
		}
		// plain and longer look like what a wildcard or an unescaped
		// special character in hostile would match.
		plain := named(base + "a")
		longer := named(base + "ab" + h)
		target := named(base + h)
		got := s.searchName(target.Name)
		if len(got) != 1 || got[0].ID.UID != target.UID {
			s.t.Errorf("Search by Name %q found %v; want only %s (not %s or %s)", target.Name, uids(got), target.UID, plain.UID, longer.UID)
		}
		// The hostile string alone names nothing.
		err := s.c.(connector.Searcher).Search(s.ctx, s.h.Class, connector.SearchOptions{Name: h}, func(o connector.Object) error {
			if o.Attributes.Get(s.h.NamingAttribute) != h {
				s.t.Errorf("Search by Name %q returned %s named %q", h, o.ID.UID, o.ID.Name)
			}
			return nil
		})
		if err != nil && connector.Classify(err) != connector.CategorySchema {
			s.t.Errorf("Search by Name %q: %v (a non-matching name should find nothing)", h, err)
		}
	}
}

// collect fetches changes after from until done says the changes seen so far
// are enough, and returns them in order. It fails the test after
// SyncTimeout.
func (s *suite) collect(from connector.Token, done func([]connector.Change) bool) []connector.Change {
	s.t.Helper()
	changes, _ := s.collectBatches(from, done)
	return changes
}

// collectBatches is collect that also returns the last batch token.
func (s *suite) collectBatches(from connector.Token, done func([]connector.Change) bool) ([]connector.Change, connector.Token) {
	s.t.Helper()
	ls := s.c.(connector.LiveSyncer)
	deadline := time.Now().Add(s.h.SyncTimeout)
	var all []connector.Change
	token := from
	for {
		b, err := ls.FetchChanges(s.ctx, s.h.Class, token, 50)
		if err != nil {
			s.t.Fatalf("FetchChanges(%q): %v", token, err)
		}
		if len(b.Changes) > 50 {
			s.t.Fatalf("FetchChanges(max 50) returned %d changes", len(b.Changes))
		}
		for _, ch := range b.Changes {
			if err := ch.Validate(); err != nil {
				s.t.Errorf("invalid change %+v: %v", ch, err)
			}
			if ch.Class != s.h.Class {
				s.t.Errorf("change of class %q in the stream of %q", ch.Class, s.h.Class)
			}
			if ch.Type == connector.ChangeDelete && ch.Object != nil {
				s.t.Errorf("delete change of %s carries attributes", ch.ID.UID)
			}
			if s.caps.PreciseTokens && ch.Token == "" {
				s.t.Errorf("precise change %s of %s has no token", ch.Type, ch.ID.UID)
			}
		}
		if s.caps.PreciseTokens && len(b.Changes) > 0 && b.Token != b.Changes[len(b.Changes)-1].Token {
			s.t.Errorf("batch token %q differs from its last change's token %q", b.Token, b.Changes[len(b.Changes)-1].Token)
		}
		if b.Token == "" {
			s.t.Fatalf("FetchChanges(%q) returned an empty batch token", token)
		}
		all = append(all, b.Changes...)
		token = b.Token
		if done(all) {
			return all, token
		}
		if !b.More {
			if time.Now().After(deadline) {
				s.t.Fatalf("changes did not show in the stream within %v; saw %d changes", s.h.SyncTimeout, len(all))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (s *suite) latest() connector.Token {
	s.t.Helper()
	tok, err := s.c.(connector.LiveSyncer).LatestToken(s.ctx, s.h.Class)
	if err != nil {
		s.t.Fatalf("LatestToken: %v", err)
	}
	return tok
}

func ofUID(chs []connector.Change, uid string) []connector.Change {
	var out []connector.Change
	for _, c := range chs {
		if c.ID.UID == uid {
			out = append(out, c)
		}
	}
	return out
}

func testLiveSyncChanges(s *suite) {
	from := s.latest()
	a, name := s.attrs()
	id := s.mustAdd(a)
	v := "modified " + uniq()
	s.mustModify(id, connector.AttributeDelta{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{v}})
	var want []connector.ChangeType
	if s.caps.LiveSyncDeletes {
		s.mustDelete(id)
		want = []connector.ChangeType{connector.ChangeCreate, connector.ChangeModify, connector.ChangeDelete}
	} else {
		want = []connector.ChangeType{connector.ChangeCreate, connector.ChangeModify}
	}
	lastType := want[len(want)-1]
	mine := ofUID(s.collect(from, func(chs []connector.Change) bool {
		m := ofUID(chs, id.UID)
		if len(m) == 0 {
			return false
		}
		last := m[len(m)-1]
		if s.caps.CreateOrModify && lastType == connector.ChangeModify {
			return last.Object == nil || last.Object.Get(s.h.ModifiableAttribute) == v
		}
		return last.Type == lastType
	}), id.UID)
	if !s.caps.CreateOrModify {
		got := make([]connector.ChangeType, len(mine))
		for i, c := range mine {
			got[i] = c.Type
		}
		if !slices.Equal(got, want) {
			s.t.Fatalf("changes of %s: %v; want %v", id.UID, got, want)
		}
	}
	for _, ch := range mine {
		switch ch.Type {
		case connector.ChangeCreate, connector.ChangeModify, connector.ChangeCreateOrModify:
			if ch.ID.Name != id.Name {
				s.t.Errorf("%s change has Name %q; want %q", ch.Type, ch.ID.Name, id.Name)
			}
			if ch.Object != nil && ch.Object.Get(s.h.NamingAttribute) != name {
				s.t.Errorf("%s change carries %q = %q; want %q", ch.Type, s.h.NamingAttribute, ch.Object.Get(s.h.NamingAttribute), name)
			}
		}
		if ch.Type == connector.ChangeModify && ch.Object != nil && ch.Object.Get(s.h.ModifiableAttribute) != v {
			s.t.Errorf("modify change carries %q = %q; want %q", s.h.ModifiableAttribute, ch.Object.Get(s.h.ModifiableAttribute), v)
		}
	}
	// Nothing of ours comes after the latest token.
	tail := s.latest()
	b, err := s.c.(connector.LiveSyncer).FetchChanges(s.ctx, s.h.Class, tail, 0)
	if err != nil {
		s.t.Fatalf("FetchChanges(latest %q): %v", tail, err)
	}
	if m := ofUID(b.Changes, id.UID); len(m) != 0 {
		s.t.Errorf("FetchChanges after the latest token returned %d old changes of %s", len(m), id.UID)
	}
}

func testPreciseResume(s *suite) {
	from := s.latest()
	var ids []connector.Identifiers
	for range 3 {
		a, _ := s.attrs()
		ids = append(ids, s.mustAdd(a))
	}
	seenAll := func(chs []connector.Change) bool {
		for _, id := range ids {
			if len(ofUID(chs, id.UID)) == 0 {
				return false
			}
		}
		return true
	}
	all := s.collect(from, seenAll)
	// Resume after every change: the stream continues with the next one.
	for i := range all[:len(all)-1] {
		b, err := s.c.(connector.LiveSyncer).FetchChanges(s.ctx, s.h.Class, all[i].Token, 1)
		if err != nil {
			s.t.Fatalf("FetchChanges after change %d (token %q): %v", i, all[i].Token, err)
		}
		if len(b.Changes) != 1 {
			s.t.Fatalf("FetchChanges(%q, max 1) returned %d changes; want 1", all[i].Token, len(b.Changes))
		}
		if got, want := b.Changes[0], all[i+1]; got.ID.UID != want.ID.UID || got.Type != want.Type || got.Token != want.Token {
			s.t.Errorf("resuming after change %d gave %s %s (token %q); want %s %s (token %q)",
				i, got.Type, got.ID.UID, got.Token, want.Type, want.ID.UID, want.Token)
		}
		if i+2 < len(all) && !b.More {
			s.t.Errorf("FetchChanges(max 1) with more changes after it says More is false")
		}
	}
}

func testBatchToken(s *suite) {
	from := s.latest()
	a, _ := s.attrs()
	id := s.mustAdd(a)
	_, token := s.collectBatches(from, func(chs []connector.Change) bool { return len(ofUID(chs, id.UID)) > 0 })
	b, _ := s.attrs()
	bid := s.mustAdd(b)
	// Resuming from the batch token loses nothing that came after it.
	after := s.collect(token, func(chs []connector.Change) bool { return len(ofUID(chs, bid.UID)) > 0 })
	if !s.caps.PreciseTokens {
		return // an imprecise stream may repeat changes before its token
	}
	if m := ofUID(after, id.UID); len(m) != 0 {
		s.t.Errorf("resuming from batch token %q repeated %d changes of %s", token, len(m), id.UID)
	}
}

func testBadToken(s *suite) {
	for _, tok := range []connector.Token{"\x00not a token!", "*)(uid=*", "-1"} {
		_, err := s.c.(connector.LiveSyncer).FetchChanges(s.ctx, s.h.Class, tok, 10)
		s.wantCategory("FetchChanges with a malformed token "+quote(string(tok)), err, connector.CategorySchema)
	}
}

func testCancelled(s *suite) {
	a, _ := s.attrs()
	id := s.mustAdd(a)
	ctx, cancel := context.WithCancel(s.ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(s.ctx, time.Now().Add(-time.Second))
	defer cancel2()
	mod := []connector.AttributeDelta{{Op: connector.Replace, Name: s.h.ModifiableAttribute, Values: []string{"cancelled"}}}
	b, _ := s.attrs()
	calls := map[string]func(context.Context) error{
		"Get":    func(ctx context.Context) error { _, err := s.c.Get(ctx, s.h.Class, id); return err },
		"Modify": func(ctx context.Context) error { _, err := s.c.Modify(ctx, s.h.Class, id, mod); return err },
		"Add":    func(ctx context.Context) error { _, err := s.c.Add(ctx, s.h.Class, b); return err },
		"Delete": func(ctx context.Context) error { _, err := s.c.Delete(ctx, s.h.Class, id); return err },
	}
	if sr, ok := s.c.(connector.Searcher); ok {
		calls["Search"] = func(ctx context.Context) error {
			return sr.Search(ctx, s.h.Class, connector.SearchOptions{}, func(connector.Object) error { return nil })
		}
	}
	if ls, ok := s.c.(connector.LiveSyncer); ok {
		calls["LatestToken"] = func(ctx context.Context) error { _, err := ls.LatestToken(ctx, s.h.Class); return err }
		calls["FetchChanges"] = func(ctx context.Context) error { _, err := ls.FetchChanges(ctx, s.h.Class, "", 10); return err }
	}
	if ts, ok := s.c.(connector.Tester); ok {
		calls["Test"] = ts.Test
	}
	for _, name := range sortedKeys(calls) {
		for _, c := range []struct {
			what string
			ctx  context.Context
		}{{"cancelled", ctx}, {"expired", expired}} {
			start := time.Now()
			err := calls[name](c.ctx)
			if err == nil {
				s.t.Errorf("%s with a %s context succeeded", name, c.what)
			}
			if d := time.Since(start); d > 5*time.Second {
				s.t.Errorf("%s with a %s context took %v", name, c.what, d)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func testTester(s *suite) {
	ts, ok := s.c.(connector.Tester)
	if !ok {
		s.t.Skipf("%T is not a connector.Tester", s.c)
	}
	if err := ts.Test(s.ctx); err != nil {
		s.t.Errorf("Test of a healthy resource: %v", err)
	}
}

func testAsyncUnknown(s *suite) {
	_, err := s.c.(connector.AsyncOperator).OperationStatus(s.ctx, "no-such-operation-"+uniq())
	s.wantCategory("OperationStatus of an unknown ref", err, connector.CategoryNotFound)
}

// testConcurrentAdd adds one name from several goroutines at once: exactly
// one add wins, the others fail with ErrAlreadyExists. This is what keeps
// the engine from ever creating a duplicate account.
func testConcurrentAdd(s *suite) {
	a, _ := s.attrs()
	const n = 8
	errs := make([]error, n)
	ids := make([]connector.Identifiers, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := s.c.Add(s.ctx, s.h.Class, a.Clone())
			ids[i], errs[i] = res.ID, err
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			s.mustGet(ids[i])
			continue
		}
		s.wantCategory("a losing concurrent Add", err, connector.CategoryAlreadyExists)
	}
	if won != 1 {
		s.t.Fatalf("%d of %d concurrent adds of one name succeeded; want exactly 1", won, n)
	}
}
