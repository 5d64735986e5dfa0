package storetest

import (
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

func batchCases() []testCase {
	return []testCase{
		{name: "BatchApplies", needs: needBatcher, run: testBatchApplies},
		{name: "BatchSeesEarlierWrites", needs: needBatcher, run: testBatchSeesEarlier},
		{name: "BatchAtomicOnConflict", needs: needBatcher, run: testBatchAtomicConflict},
		{name: "BatchAtomicOnDuplicate", needs: needBatcher, run: testBatchAtomicDuplicate},
		{name: "BatchInvalid", needs: needBatcher, run: testBatchInvalid},
	}
}

func testBatchApplies(h *harness) {
	t := h.t
	b := h.batcher()
	h.create(newShadow("upd", "r1", "account", "u1"))
	h.create(newShadow("del", "r1", "account", "u2"))
	h.clk.Advance(time.Minute)

	created := newShadow("", "r1", "account", "u3")
	upd := h.get("upd")
	upd.Attributes["mail"] = []string{"b@example.org"}
	del := h.get("del")
	if err := b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteCreate, Shadow: created},
		{Op: shadow.WriteUpdate, Shadow: upd},
		{Op: shadow.WriteDelete, Shadow: del},
	}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if created.ID == "" || created.Version != 1 {
		t.Fatalf("Apply left the created shadow with ID %q, Version %d; want an ID and 1", created.ID, created.Version)
	}
	if upd.Version != 2 {
		t.Fatalf("Apply left the updated shadow's Version at %d, want 2", upd.Version)
	}
	got := h.get(created.ID)
	if got.UID != "u3" || !sameTime(got.CreatedAt, h.clk.Now()) {
		t.Fatalf("created shadow reads back with UID %q, CreatedAt %v", got.UID, got.CreatedAt)
	}
	if got := h.get("upd"); got.Version != 2 || got.Attributes.Get("mail") != "b@example.org" {
		t.Fatalf("updated shadow reads back with Version %d, mail %q", got.Version, got.Attributes.Get("mail"))
	}
	h.mustBeMissing("del")

	if err := b.Apply(h.ctx, nil); err != nil {
		t.Fatalf("Apply of an empty batch: %v", err)
	}
}

func testBatchSeesEarlier(h *harness) {
	t := h.t
	b := h.batcher()
	sh := newShadow("x", "r1", "account", "u1")
	gone := newShadow("y", "r1", "account", "u2")
	if err := b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteCreate, Shadow: sh},
		{Op: shadow.WriteUpdate, Shadow: sh}, // at Version 1, set by the create
		{Op: shadow.WriteCreate, Shadow: gone},
		{Op: shadow.WriteDelete, Shadow: gone},
	}); err != nil {
		t.Fatalf("Apply of create+update and create+delete: %v", err)
	}
	if sh.Version != 2 || h.get("x").Version != 2 {
		t.Fatalf("created-then-updated shadow has Version %d (stored %d), want 2", sh.Version, h.get("x").Version)
	}
	h.mustBeMissing("y")

	// A batch that frees an identity and then takes it.
	dead := h.get("x")
	dead.Dead = true
	if err := b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteUpdate, Shadow: dead},
		{Op: shadow.WriteCreate, Shadow: newShadow("x2", "r1", "account", "u1")},
	}); err != nil {
		t.Fatalf("Apply of mark-dead then create of the same identity: %v", err)
	}
}

func testBatchAtomicConflict(h *harness) {
	t := h.t
	b := h.batcher()
	h.create(newShadow("a", "r1", "account", "u1"))
	h.create(newShadow("c", "r1", "account", "u3"))
	h.create(newShadow("d", "r1", "account", "u4"))
	stale := h.get("c")
	fresh := h.get("c")
	h.update(fresh)
	wantA, wantC, wantD := h.snapshot("a"), h.snapshot("c"), h.snapshot("d")

	upd := h.get("a")
	upd.Attributes["mail"] = []string{"never@example.org"}
	created := newShadow("b", "r1", "account", "u2")
	stale.Attributes["mail"] = []string{"never@example.org"}
	del := h.get("d")
	writes := []shadow.Write{
		{Op: shadow.WriteUpdate, Shadow: upd},
		{Op: shadow.WriteCreate, Shadow: created},
		{Op: shadow.WriteUpdate, Shadow: stale}, // conflicts
		{Op: shadow.WriteDelete, Shadow: del},
	}
	err := b.Apply(h.ctx, writes)
	wantErr(t, "Apply whose third write conflicts", err, shadow.ErrConflict)

	mustEqual(t, "first write's shadow", h.get("a"), wantA)
	h.mustBeMissing("b")
	mustEqual(t, "conflicting shadow", h.get("c"), wantC)
	mustEqual(t, "fourth write's shadow", h.get("d"), wantD)
	if n := h.count(shadow.Query{}); n != 3 {
		t.Fatalf("Count = %d after a failed batch, want 3", n)
	}
	if upd.Version != 1 || created.Version != 0 || stale.Version != 1 {
		t.Fatalf("failed batch changed the callers' versions: update %d, create %d, conflict %d; want 1, 0, 1",
			upd.Version, created.Version, stale.Version)
	}
	// The same writes succeed once the stale one is fixed.
	stale.Version = wantC.Version
	if err := b.Apply(h.ctx, writes); err != nil {
		t.Fatalf("Apply after fixing the stale version: %v", err)
	}
	if got := h.get("a"); got.Attributes.Get("mail") != "never@example.org" || got.Version != 2 {
		t.Fatalf("retried batch: shadow a has mail %q, Version %d", got.Attributes.Get("mail"), got.Version)
	}
	h.mustBeMissing("d")
}

func testBatchAtomicDuplicate(h *harness) {
	t := h.t
	b := h.batcher()
	h.create(newShadow("a", "r1", "account", "u1"))
	wantA := h.snapshot("a")
	upd := h.get("a")
	upd.Attributes["mail"] = []string{"never@example.org"}
	err := b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteUpdate, Shadow: upd},
		{Op: shadow.WriteCreate, Shadow: newShadow("x", "r1", "account", "u9")},
		{Op: shadow.WriteCreate, Shadow: newShadow("y", "r1", "account", "u9")}, // same live identity as x
	})
	wantErr(t, "Apply creating one live identity twice", err, shadow.ErrDuplicate)
	mustEqual(t, "first write's shadow", h.get("a"), wantA)
	h.mustBeMissing("x")
	h.mustBeMissing("y")

	err = b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteCreate, Shadow: newShadow("z", "r1", "account", "u8")},
		{Op: shadow.WriteCreate, Shadow: newShadow("a", "r2", "account", "u7")}, // taken ID
	})
	wantErr(t, "Apply creating a taken ID", err, shadow.ErrDuplicate)
	h.mustBeMissing("z")

	// A delete undone: the identity it freed was taken by a create that
	// stays unwritten too.
	del := h.get("a")
	err = b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteDelete, Shadow: del},
		{Op: shadow.WriteCreate, Shadow: newShadow("b", "r1", "account", "u1")},
		{Op: shadow.WriteCreate, Shadow: newShadow("b", "r1", "account", "u5")}, // taken ID
	})
	wantErr(t, "Apply deleting, then creating one ID twice", err, shadow.ErrDuplicate)
	mustEqual(t, "deleted shadow after the batch failed", h.get("a"), wantA)
	h.mustBeMissing("b")
	if n := h.count(shadow.Query{UID: "u1"}); n != 1 {
		t.Fatalf("Count(UID u1) = %d after the failed batch, want 1", n)
	}

	missing := newShadow("nope", "r1", "account", "u6")
	missing.Version = 1
	err = b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteCreate, Shadow: newShadow("z", "r1", "account", "u8")},
		{Op: shadow.WriteDelete, Shadow: missing},
	})
	wantErr(t, "Apply deleting a missing shadow", err, shadow.ErrNotFound)
	h.mustBeMissing("z")
}

func testBatchInvalid(h *harness) {
	t := h.t
	b := h.batcher()
	bad := newShadow("bad", "r1", "account", "u2")
	bad.Class = ""
	err := b.Apply(h.ctx, []shadow.Write{
		{Op: shadow.WriteCreate, Shadow: newShadow("ok", "r1", "account", "u1")},
		{Op: shadow.WriteCreate, Shadow: bad},
	})
	wantErr(t, "Apply with an invalid shadow", err, shadow.ErrInvalid)
	h.mustBeMissing("ok")
	h.mustBeMissing("bad")
	err = b.Apply(h.ctx, []shadow.Write{{Op: shadow.WriteCreate, Shadow: nil}})
	wantErr(t, "Apply with a nil shadow", err, shadow.ErrInvalid)

	err = b.Apply(h.cancelled(), []shadow.Write{{Op: shadow.WriteCreate, Shadow: newShadow("ok", "r1", "account", "u1")}})
	wantCancelled(t, "Apply", err)
	h.mustBeMissing("ok")
}
