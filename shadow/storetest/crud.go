package storetest

import (
	"reflect"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

func crudCases() []testCase {
	return []testCase{
		{name: "CreateAssignsIDVersionTimestamps", run: testCreateAssigns},
		{name: "CreateKeepsGivenID", run: testCreateKeepsID},
		{name: "CreateCopiesInput", run: testCreateCopiesInput},
		{name: "ReadsReturnCopies", run: testReadsReturnCopies},
		{name: "GetMissing", run: testGetMissing},
		{name: "UpdateBumpsVersion", run: testUpdateBumpsVersion},
		{name: "UpdateCopiesInput", run: testUpdateCopiesInput},
		{name: "UpdateStaleVersion", run: testUpdateStale},
		{name: "UpdateAndDeleteMissing", run: testUpdateDeleteMissing},
		{name: "Delete", run: testDelete},
		{name: "DeleteStaleVersion", run: testDeleteStale},
		{name: "DuplicateID", run: testDuplicateID},
		{name: "DuplicateLiveIdentity", run: testDuplicateLive},
		{name: "DuplicateLiveIdentityOnUpdate", run: testDuplicateLiveOnUpdate},
		{name: "Invalid", run: testInvalid},
		{name: "RoundTripEveryField", run: testRoundTripEveryField},
		{name: "RoundTripMinimal", run: testRoundTripMinimal},
		{name: "ContextCancelled", run: testContextCancelled},
	}
}

func testCreateAssigns(h *harness) {
	t := h.t
	a := newShadow("", "r1", "account", "u1")
	a.Version = 7
	a.CreatedAt = Start.Add(-time.Hour)
	a.UpdatedAt = Start.Add(-time.Hour)
	h.create(a)
	if a.ID == "" {
		t.Fatal("Create left the ID empty")
	}
	if a.Version != 1 {
		t.Fatalf("Create set Version %d, want 1", a.Version)
	}
	if !sameTime(a.CreatedAt, Start) || !sameTime(a.UpdatedAt, Start) {
		t.Fatalf("Create set CreatedAt %v, UpdatedAt %v; want the clock's %v", a.CreatedAt, a.UpdatedAt, Start)
	}
	got := h.get(a.ID)
	if got.Version != 1 || !sameTime(got.CreatedAt, Start) || !sameTime(got.UpdatedAt, Start) {
		t.Fatalf("stored Version %d, CreatedAt %v, UpdatedAt %v; want 1 and %v", got.Version, got.CreatedAt, got.UpdatedAt, Start)
	}
	mustEqual(t, "Get after Create", got, a)

	// A second shadow gets another ID.
	h.clk.Advance(time.Second)
	b := h.create(newShadow("", "r1", "account", "u2"))
	if b.ID == "" || b.ID == a.ID {
		t.Fatalf("second Create assigned ID %q (first %q): want a new one", b.ID, a.ID)
	}
	if !sameTime(b.CreatedAt, Start.Add(time.Second)) {
		t.Fatalf("second Create set CreatedAt %v, want %v", b.CreatedAt, Start.Add(time.Second))
	}
}

func testCreateKeepsID(h *harness) {
	sh := h.create(newShadow("given-id-1", "r1", "account", "u1"))
	if sh.ID != "given-id-1" {
		h.t.Fatalf("Create changed the given ID to %q", sh.ID)
	}
	if got := h.get("given-id-1"); got.UID != "u1" {
		h.t.Fatalf("Get(given-id-1).UID = %q, want u1", got.UID)
	}
}

func pendingModify(id int64, t shadow.OpType, requested time.Time) shadow.PendingOperation {
	return shadow.PendingOperation{
		ID:          id,
		Delta:       connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"a@example.org"}}}},
		Type:        t,
		Status:      shadow.StatusPendingExecution,
		Result:      shadow.ResultInProgress,
		RequestedAt: requested,
	}
}

func testCreateCopiesInput(h *harness) {
	t := h.t
	sh := newShadow("c1", "r1", "account", "u1")
	sh.Attributes = connector.Attributes{"mail": {"a@example.org"}, "cn": {"A"}}
	sh.Pending = []shadow.PendingOperation{pendingModify(1, shadow.OpRetry, Start)}
	h.create(sh)
	want := h.snapshot("c1")

	// Mutate everything reachable from the caller's value.
	sh.Attributes["mail"][0] = "changed@example.org"
	sh.Attributes["new"] = []string{"x"}
	sh.Pending[0].Delta.Changes[0].Values[0] = "changed"
	sh.Pending[0].Attempt = 9
	sh.Pending = append(sh.Pending, pendingModify(2, shadow.OpRetry, Start))
	sh.UID = "other"

	mustEqual(t, "stored shadow after the caller changed its copy", h.get("c1"), want)
	if got := h.get("c1"); got.Attributes.Get("mail") != "a@example.org" {
		t.Fatalf("stored mail = %q: Create kept a reference to the caller's attributes", got.Attributes.Get("mail"))
	}
}

func testReadsReturnCopies(h *harness) {
	t := h.t
	sh := newShadow("c1", "r1", "account", "u1")
	sh.Attributes = connector.Attributes{"mail": {"a@example.org", "b@example.org"}}
	sh.Pending = []shadow.PendingOperation{pendingModify(1, shadow.OpRetry, Start)}
	h.create(sh)
	want := h.snapshot("c1")

	mutate := func(got *shadow.Shadow) {
		got.Attributes["mail"][0] = "changed@example.org"
		got.Attributes["mail"] = append(got.Attributes["mail"], "appended@example.org")
		got.Attributes["new"] = []string{"x"}
		got.Pending[0].Delta.Changes[0].Values[0] = "changed"
		got.Pending[0].Status = shadow.StatusCompleted
		got.Version = 99
	}
	mutate(h.get("c1"))
	mustEqual(t, "Get after changing a shadow Get returned", h.get("c1"), want)

	list := h.list(shadow.Query{})
	if len(list) != 1 {
		t.Fatalf("List returned %d shadows, want 1", len(list))
	}
	mutate(list[0])
	mustEqual(t, "Get after changing a shadow List returned", h.get("c1"), want)
}

func testGetMissing(h *harness) {
	h.mustBeMissing("no-such-shadow")
	h.create(newShadow("a", "r1", "account", "u1"))
	h.mustBeMissing("b")
}

func testUpdateBumpsVersion(h *harness) {
	t := h.t
	sh := h.create(newShadow("u1", "r1", "account", "u1"))
	h.clk.Advance(time.Minute)
	now := h.clk.Now()

	got := h.get("u1")
	got.Attributes["mail"] = []string{"new@example.org"}
	got.CreatedAt = Start.Add(-24 * time.Hour) // the store owns the timestamps
	got.UpdatedAt = Start.Add(-24 * time.Hour)
	h.update(got)
	if got.Version != 2 {
		t.Fatalf("Update set the caller's Version to %d, want 2", got.Version)
	}
	stored := h.get("u1")
	if stored.Version != 2 {
		t.Fatalf("stored Version %d after one Update, want 2", stored.Version)
	}
	if !sameTime(stored.CreatedAt, Start) {
		t.Fatalf("Update changed CreatedAt to %v, want %v", stored.CreatedAt, Start)
	}
	if !sameTime(stored.UpdatedAt, now) {
		t.Fatalf("Update set UpdatedAt %v, want the clock's %v", stored.UpdatedAt, now)
	}
	if stored.Attributes.Get("mail") != "new@example.org" {
		t.Fatalf("Update did not store the new attribute: %v", stored.Attributes)
	}

	// An unchanged shadow still gets a new version; versions keep counting.
	h.update(stored)
	h.update(stored)
	if v := h.get("u1").Version; v != 4 || stored.Version != 4 {
		t.Fatalf("after three Updates stored Version %d, caller's %d; want 4", v, stored.Version)
	}
	_ = sh
}

func testUpdateCopiesInput(h *harness) {
	sh := h.create(newShadow("u1", "r1", "account", "u1"))
	sh.Attributes = connector.Attributes{"mail": {"a@example.org"}}
	h.update(sh)
	sh.Attributes["mail"][0] = "changed@example.org"
	if got := h.get("u1").Attributes.Get("mail"); got != "a@example.org" {
		h.t.Fatalf("stored mail = %q after the caller changed its copy: Update kept a reference", got)
	}
}

func testUpdateStale(h *harness) {
	t := h.t
	h.create(newShadow("s1", "r1", "account", "u1"))
	first := h.get("s1")
	second := h.get("s1")

	first.Attributes["mail"] = []string{"first@example.org"}
	h.update(first)
	want := h.snapshot("s1")

	second.Attributes["mail"] = []string{"second@example.org"}
	second.Dead = true
	err := h.s.Update(h.ctx, second)
	wantErr(t, "Update with a stale version", err, shadow.ErrConflict)
	if second.Version != 1 {
		t.Fatalf("failed Update changed the caller's Version to %d, want 1", second.Version)
	}
	mustEqual(t, "stored shadow after a conflicting Update", h.get("s1"), want)

	// A version from the future conflicts too.
	ahead := h.get("s1")
	ahead.Version += 5
	wantErr(t, "Update with a version ahead of the store", h.s.Update(h.ctx, ahead), shadow.ErrConflict)
	mustEqual(t, "stored shadow after a conflicting Update", h.get("s1"), want)
}

func testUpdateDeleteMissing(h *harness) {
	t := h.t
	sh := newShadow("missing", "r1", "account", "u1")
	sh.Version = 1
	wantErr(t, "Update of a missing shadow", h.s.Update(h.ctx, sh), shadow.ErrNotFound)
	h.mustBeMissing("missing")
	wantErr(t, "Delete of a missing shadow", h.s.Delete(h.ctx, "missing", 1), shadow.ErrNotFound)

	// Gone after a Delete: both fail the same way.
	h.create(newShadow("gone", "r1", "account", "u2"))
	if err := h.s.Delete(h.ctx, "gone", 1); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	g := newShadow("gone", "r1", "account", "u2")
	g.Version = 1
	wantErr(t, "Update of a deleted shadow", h.s.Update(h.ctx, g), shadow.ErrNotFound)
	wantErr(t, "second Delete", h.s.Delete(h.ctx, "gone", 1), shadow.ErrNotFound)
}

func testDelete(h *harness) {
	t := h.t
	h.create(newShadow("d1", "r1", "account", "u1"))
	h.create(newShadow("d2", "r1", "account", "u2"))
	sh := h.get("d1")
	h.update(sh)
	if err := h.s.Delete(h.ctx, "d1", 2); err != nil {
		t.Fatalf("Delete(d1, 2): %v", err)
	}
	h.mustBeMissing("d1")
	if got := ids(h.list(shadow.Query{})); !cmp.Equal(got, []string{"d2"}) {
		t.Fatalf("List after Delete = %v, want [d2]", got)
	}
	if n := h.count(shadow.Query{ResourceID: "r1"}); n != 1 {
		t.Fatalf("Count after Delete = %d, want 1", n)
	}
	if n := h.count(shadow.Query{UID: "u1"}); n != 0 {
		t.Fatalf("Count(UID u1) after Delete = %d, want 0: the identifier index kept it", n)
	}
	// The ID and the identity are free again.
	h.create(newShadow("d1", "r1", "account", "u1"))
	if v := h.get("d1").Version; v != 1 {
		t.Fatalf("re-created shadow has Version %d, want 1", v)
	}
}

func testDeleteStale(h *harness) {
	t := h.t
	h.create(newShadow("d1", "r1", "account", "u1"))
	sh := h.get("d1")
	h.update(sh)
	wantErr(t, "Delete with a stale version", h.s.Delete(h.ctx, "d1", 1), shadow.ErrConflict)
	wantErr(t, "Delete with a version ahead", h.s.Delete(h.ctx, "d1", 3), shadow.ErrConflict)
	if got := h.get("d1"); got.Version != 2 {
		t.Fatalf("after failed Deletes stored Version %d, want 2", got.Version)
	}
}

func testDuplicateID(h *harness) {
	t := h.t
	h.create(newShadow("x", "r1", "account", "u1"))
	want := h.snapshot("x")
	dup := newShadow("x", "r2", "group", "g1")
	wantErr(t, "Create with a taken ID", h.s.Create(h.ctx, dup), shadow.ErrDuplicate)
	mustEqual(t, "shadow after a duplicate Create", h.get("x"), want)
	if n := h.count(shadow.Query{}); n != 1 {
		t.Fatalf("Count after duplicate Create = %d, want 1", n)
	}
}

func testDuplicateLive(h *harness) {
	t := h.t
	h.create(newShadow("live", "r1", "account", "u1"))

	dup := newShadow("", "r1", "account", "u1")
	wantErr(t, "Create of a second live shadow with the same identity", h.s.Create(h.ctx, dup), shadow.ErrDuplicate)
	if n := h.count(shadow.Query{UID: "u1"}); n != 1 {
		t.Fatalf("Count(UID u1) = %d after the duplicate Create, want 1", n)
	}

	// Dead shadows and shadows that do not exist on the resource hold no
	// identity; other resources and classes are other identities.
	dead := newShadow("dead", "r1", "account", "u1")
	dead.Dead, dead.DeadSince = true, Start.Add(-time.Hour)
	h.create(dead)
	proposed := newShadow("proposed", "r1", "account", "u1")
	proposed.Exists = false
	h.create(proposed)
	h.create(newShadow("other-resource", "r2", "account", "u1"))
	h.create(newShadow("other-class", "r1", "group", "u1"))

	// Existing shadows known only by Name do not collide on the empty UID.
	byName1 := newShadow("name-only-1", "r1", "account", "")
	byName1.Exists, byName1.Name = true, "uid=a"
	byName2 := newShadow("name-only-2", "r1", "account", "")
	byName2.Exists, byName2.Name = true, "uid=b"
	h.create(byName1)
	h.create(byName2)

	// Once the live one dies, a new live shadow may take the identity.
	sh := h.get("live")
	sh.Dead, sh.DeadSince = true, Start
	h.update(sh)
	h.create(newShadow("live-again", "r1", "account", "u1"))
	if n := h.count(shadow.Query{ResourceID: "r1", Class: "account", UID: "u1"}); n != 4 {
		t.Fatalf("Count(r1/account/u1) = %d, want 4 (two dead, one proposed, one live)", n)
	}
}

func testDuplicateLiveOnUpdate(h *harness) {
	t := h.t
	h.create(newShadow("live", "r1", "account", "u1"))
	proposed := newShadow("proposed", "r1", "account", "u1")
	proposed.Exists = false
	h.create(proposed)
	dead := newShadow("dead", "r1", "account", "u1")
	dead.Dead = true
	h.create(dead)
	h.create(newShadow("other", "r1", "account", "u2"))

	// The proposed shadow's add "succeeds" while another live shadow holds
	// the identity: Update fails and writes nothing.
	for _, id := range []string{"proposed", "dead", "other"} {
		before := h.snapshot(id)
		sh := h.get(id)
		sh.Exists, sh.Dead, sh.UID = true, false, "u1"
		sh.Attributes["mail"] = []string{"x@example.org"}
		wantErr(t, "Update of "+id+" into a taken live identity", h.s.Update(h.ctx, sh), shadow.ErrDuplicate)
		if sh.Version != before.Version {
			t.Fatalf("failed Update changed the caller's Version from %d to %d", before.Version, sh.Version)
		}
		mustEqual(t, id+" after a duplicate Update", h.get(id), before)
	}

	// A live shadow updating itself keeps its own identity.
	sh := h.get("live")
	sh.Attributes["mail"] = []string{"self@example.org"}
	h.update(sh)

	// After the live one dies, the proposed one may go live.
	sh.Dead = true
	h.update(sh)
	p := h.get("proposed")
	p.Exists = true
	h.update(p)
}

func testInvalid(h *harness) {
	t := h.t
	invalid := map[string]func(*shadow.Shadow){
		"no resource": func(s *shadow.Shadow) { s.ResourceID = "" },
		"no class":    func(s *shadow.Shadow) { s.Class = "" },
		"no origin":   func(s *shadow.Shadow) { s.Origin = 0 },
		"exists without identifiers": func(s *shadow.Shadow) {
			s.UID, s.Name = "", ""
		},
		"invalid pending operation": func(s *shadow.Shadow) {
			s.Pending = []shadow.PendingOperation{{ID: 1, Delta: connector.Delta{Type: connector.DeltaAdd}, Type: 9, Status: shadow.StatusRequested, Result: shadow.ResultInProgress}}
		},
	}
	for what, spoil := range invalid {
		sh := newShadow("bad", "r1", "account", "u1")
		spoil(sh)
		if sh.Validate() == nil {
			t.Fatalf("suite bug: %s shadow is valid", what)
		}
		wantErr(t, "Create of a shadow with "+what, h.s.Create(h.ctx, sh), shadow.ErrInvalid)
	}
	wantErr(t, "Create(nil)", h.s.Create(h.ctx, nil), shadow.ErrInvalid)
	if n := h.count(shadow.Query{}); n != 0 {
		t.Fatalf("Count = %d after invalid Creates, want 0", n)
	}

	h.create(newShadow("good", "r1", "account", "u1"))
	want := h.snapshot("good")
	for what, spoil := range invalid {
		sh := h.get("good")
		spoil(sh)
		wantErr(t, "Update to a shadow with "+what, h.s.Update(h.ctx, sh), shadow.ErrInvalid)
		if sh.Version != want.Version {
			t.Fatalf("invalid Update changed the caller's Version to %d", sh.Version)
		}
	}
	wantErr(t, "Update(nil)", h.s.Update(h.ctx, nil), shadow.ErrInvalid)
	mustEqual(t, "shadow after invalid Updates", h.get("good"), want)

	for _, q := range []shadow.Query{
		{Limit: -1},
		{Dead: shadow.DeadOnly + 1},
		{PendingType: shadow.OpAsync + 1},
	} {
		_, err := h.s.List(h.ctx, q)
		wantErr(t, "List("+describe(q)+")", err, shadow.ErrInvalid)
		if q.Limit >= 0 {
			_, err = h.s.Count(h.ctx, q)
			wantErr(t, "Count("+describe(q)+")", err, shadow.ErrInvalid)
		}
	}
}

// fullShadow returns a shadow with every field set to a value other than
// its zero, the pending operations too.
func fullShadow(id string) *shadow.Shadow {
	at := func(d time.Duration) time.Time { return Start.Add(d) }
	return &shadow.Shadow{
		ID:         id,
		ResourceID: "ldap-main",
		Class:      "inetOrgPerson",
		Kind:       "account",
		Intent:     "default",
		UID:        "9f3c2a1e-77aa-4c1b-bb7e-1234567890ab",
		Name:       "uid=jöns,ou=people,dc=example,dc=org",
		Attributes: connector.Attributes{
			"cn":          {"Jöns Jacob", "J. J."},
			"mail":        {"jj@example.org"},
			"objectClass": {"top", "person", "inetOrgPerson"},
			"photo":       {"\x00\x01\xfe\xff binary"},
			"description": {"multi\nline, \"quoted\" 'text' ; ☃"},
		},
		Exists:    true,
		Dead:      true,
		DeadSince: at(-90*time.Minute + 123456789),
		Origin:    shadow.OriginDiscovered,
		Pending: []shadow.PendingOperation{
			{
				ID:                1,
				Delta:             connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"cn": {"a", "b"}, "sn": {"c"}}},
				Type:              shadow.OpRetry,
				Status:            shadow.StatusCompleted,
				Result:            shadow.ResultFailure,
				Attempt:           4,
				AsyncRef:          "ref-1",
				RequestedAt:       at(-5 * time.Hour),
				LastAttemptAt:     at(-4*time.Hour + 1000),
				NextAttemptAt:     at(-3*time.Hour + 999999),
				CompletedAt:       at(-2 * time.Hour),
				LastError:         "connection refused: 10.0.0.1:636",
				LastErrorCategory: connector.CategoryNotSent,
				CancelReason:      "operator gave up",
			},
			{
				ID: 2,
				Delta: connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{
					{Op: connector.Replace, Name: "mail", Values: []string{"x@example.org", "y@example.org"}},
					{Op: connector.AddValues, Name: "cn", Values: []string{"d"}},
					{Op: connector.DeleteValues, Name: "sn"},
				}},
				Type:              shadow.OpAsync,
				Status:            shadow.StatusExecuting,
				Result:            shadow.ResultInProgress,
				Attempt:           1,
				AsyncRef:          "TICKET-42",
				RequestedAt:       at(-time.Hour),
				LastAttemptAt:     at(-time.Minute),
				NextAttemptAt:     at(time.Hour),
				CompletedAt:       at(2 * time.Hour),
				LastError:         "throttled",
				LastErrorCategory: connector.CategoryThrottled,
				CancelReason:      "-",
			},
			{
				ID:                3,
				Delta:             connector.Delta{Type: connector.DeltaDelete},
				Type:              shadow.OpGrouped,
				Status:            shadow.StatusRequested,
				Result:            shadow.ResultInProgress,
				Attempt:           0,
				AsyncRef:          "g",
				RequestedAt:       at(-time.Second),
				LastAttemptAt:     at(-time.Second),
				NextAttemptAt:     at(time.Second),
				CompletedAt:       at(time.Second),
				LastError:         "e",
				LastErrorCategory: connector.CategoryPermission,
				CancelReason:      "c",
			},
		},
		NextDue:             at(30*time.Minute + 1),
		NeedsReconciliation: true,
		ReconciledAt:        at(-10*time.Minute + 7),
		Version:             1,
		CreatedAt:           Start,
		UpdatedAt:           Start,
	}
}

// checkAllSet fails when a field of v (a struct) is its zero value, so that
// a field added to Shadow or PendingOperation later cannot slip past the
// round trip unnoticed. skip names fields that may be zero.
func checkAllSet(h *harness, what string, v any, skip ...string) {
	h.t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		name := rv.Type().Field(i).Name
		if rv.Field(i).IsZero() && !contains(skip, name) {
			h.t.Fatalf("suite bug: %s.%s is zero in the round-trip fixture", what, name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func testRoundTripEveryField(h *harness) {
	t := h.t
	in := fullShadow("full")
	checkAllSet(h, "Shadow", *in)
	for i, op := range in.Pending {
		skip := []string(nil)
		if i == 2 {
			skip = []string{"Attempt"} // zero attempts is a real value
		}
		checkAllSet(h, "PendingOperation", op, skip...)
	}
	want := in.Clone()
	h.create(in)
	want.ID = in.ID

	mustEqual(t, "Get after Create", h.get("full"), want)
	list := h.list(shadow.Query{UID: want.UID})
	if len(list) != 1 {
		t.Fatalf("List by UID returned %d shadows, want 1", len(list))
	}
	mustEqual(t, "List after Create", list[0], want)

	// Update with different values for every field round-trips too.
	h.clk.Advance(time.Hour)
	up := h.get("full")
	up.ResourceID, up.Class, up.Kind, up.Intent = "db", "account", "entitlement", "admin"
	up.UID, up.Name = "42", "jj"
	up.Attributes = connector.Attributes{"login": {"jj"}}
	up.Exists, up.Dead, up.DeadSince = false, false, time.Time{}
	up.Origin = shadow.OriginAssigned
	up.Pending = up.Pending[1:2]
	up.Pending[0].Status, up.Pending[0].Result = shadow.StatusCompleted, shadow.ResultSuccess
	up.NextDue = time.Time{}
	up.NeedsReconciliation = false
	up.ReconciledAt = h.clk.Now()
	want = up.Clone()
	h.update(up)
	want.Version = 2
	want.UpdatedAt = h.clk.Now()
	mustEqual(t, "Get after Update", h.get("full"), want)
}

func testRoundTripMinimal(h *harness) {
	t := h.t
	in := &shadow.Shadow{ID: "min", ResourceID: "r", Class: "c", Origin: shadow.OriginAssigned}
	h.create(in)
	got := h.get("min")
	mustEqual(t, "minimal shadow", got, in)
	if !got.DeadSince.IsZero() || !got.NextDue.IsZero() {
		t.Fatalf("zero times came back as DeadSince %v, NextDue %v", got.DeadSince, got.NextDue)
	}
	if len(got.Attributes) != 0 || len(got.Pending) != 0 {
		t.Fatalf("empty shadow came back with attributes %v, pending %v", got.Attributes, got.Pending)
	}
	// Empty (not nil) attributes and values read back as empty.
	got.Attributes = connector.Attributes{"empty": {}}
	got.Pending = []shadow.PendingOperation{}
	h.update(got)
	if a := h.get("min").Attributes; len(a["empty"]) != 0 || len(a.Names()) != 0 {
		t.Fatalf("attribute without values came back as %v", a)
	}
}

func testContextCancelled(h *harness) {
	t := h.t
	h.create(newShadow("a", "r1", "account", "u1"))
	ctx := h.cancelled()
	check := func(what string, err error) {
		t.Helper()
		wantCancelled(t, what, err)
	}
	check("Create", h.s.Create(ctx, newShadow("b", "r1", "account", "u2")))
	_, err := h.s.Get(ctx, "a")
	check("Get", err)
	sh := h.get("a")
	check("Update", h.s.Update(ctx, sh))
	check("Delete", h.s.Delete(ctx, "a", 1))
	_, err = h.s.List(ctx, shadow.Query{})
	check("List", err)
	_, err = h.s.Count(ctx, shadow.Query{})
	check("Count", err)
	h.mustBeMissing("b")
	if got := h.get("a"); got.Version != 1 {
		t.Fatalf("Version %d after cancelled writes, want 1", got.Version)
	}
}
