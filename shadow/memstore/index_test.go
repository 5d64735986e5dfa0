package memstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestOrderedSetModel drives an orderedSet through random inserts and
// removes, past several block splits and merges, and checks it against a
// sorted slice after every step.
func TestOrderedSetModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	set := newOrderedSet(byID)
	var model []*record
	pool := make([]*record, 4000)
	for i := range pool {
		pool[i] = &record{id: fmt.Sprintf("%05d", rng.IntN(100000))}
	}
	slices.SortFunc(pool, byID)
	pool = slices.CompactFunc(pool, func(a, b *record) bool { return a.id == b.id })
	in := map[*record]bool{}

	check := func(step int) {
		t.Helper()
		if set.len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", step, set.len(), len(model))
		}
		var got []*record
		set.ascend(nil, func(r *record) bool { got = append(got, r); return true })
		if !slices.Equal(got, model) {
			t.Fatalf("step %d: set order differs from the model", step)
		}
		for _, b := range set.blocks {
			if len(b) == 0 || len(b) > maxBlock {
				t.Fatalf("step %d: block of %d elements", step, len(b))
			}
		}
		// Ascend from a random pivot, stopping early.
		pivot := fmt.Sprintf("%05d", rng.IntN(100000))
		want := slices.IndexFunc(model, func(r *record) bool { return r.id > pivot })
		var from []*record
		set.ascend(func(r *record) bool { return r.id <= pivot }, func(r *record) bool {
			from = append(from, r)
			return len(from) < 3
		})
		if want < 0 {
			if len(from) != 0 {
				t.Fatalf("step %d: ascend after %s found %d past the end", step, pivot, len(from))
			}
			return
		}
		if wantN := min(3, len(model)-want); !slices.Equal(from, model[want:want+wantN]) {
			t.Fatalf("step %d: ascend after %s returned the wrong elements", step, pivot)
		}
	}

	for step := range 12000 {
		r := pool[rng.IntN(len(pool))]
		// Grow for the first half, shrink in the second.
		insert := rng.IntN(10) < 7
		if step > 6000 {
			insert = rng.IntN(10) < 3
		}
		if insert {
			set.insert(r)
			if !in[r] {
				in[r] = true
				i, _ := slices.BinarySearchFunc(model, r, byID)
				model = slices.Insert(model, i, r)
			}
		} else {
			removed := set.remove(r)
			if removed != in[r] {
				t.Fatalf("step %d: remove(%s) = %v, present %v", step, r.id, removed, in[r])
			}
			if in[r] {
				delete(in, r)
				i, _ := slices.BinarySearchFunc(model, r, byID)
				model = slices.Delete(model, i, i+1)
			}
		}
		if step%97 == 0 || step > 11900 {
			check(step)
		}
	}
	check(-1)
	// A record with the same key but another identity is not removed.
	if len(model) > 0 {
		impostor := &record{id: model[0].id}
		if set.remove(impostor) {
			t.Fatal("remove took out a different record with the same key")
		}
	}
	var empty *orderedSet
	if empty.len() != 0 {
		t.Fatal("nil set has a length")
	}
	empty.ascend(nil, func(*record) bool { t.Fatal("nil set has elements"); return false })
	if newOrderedSet(byID).remove(&record{}) {
		t.Fatal("remove from an empty set succeeded")
	}
}
