package connector

import (
	"flag"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"
)

var mergeSeed = flag.Int64("merge.seed", 0, "seed of TestMergeProperty (0: from the clock)")

// checkMerge asserts Merge's contract for one starting state and one delta
// sequence: when applying the deltas one by one succeeds, Merge succeeds and
// applying its result to the same state gives the same state; when Merge
// says there is nothing to do, the state and its existence are unchanged.
// It returns whether the sequence applied one by one.
func checkMerge(t *testing.T, label string, start Attributes, exists bool, deltas []Delta) bool {
	t.Helper()
	state, ex := start.Clone(), exists
	for _, d := range deltas {
		var err error
		if state, ex, err = Apply(state, ex, d); err != nil {
			// Not a valid history for this state: Merge may do anything
			// but panic or change its input.
			before := cloneDeltas(deltas)
			Merge(deltas) //nolint:errcheck // only checking it does not panic or write
			if !deltasEqual(deltas, before) {
				t.Fatalf("%s: Merge modified its input", label)
			}
			return false
		}
	}
	before := cloneDeltas(deltas)
	merged, ok, err := Merge(deltas)
	if !deltasEqual(deltas, before) {
		t.Fatalf("%s: Merge modified its input", label)
	}
	if err != nil {
		t.Fatalf("%s: deltas apply one by one but Merge fails: %v\n%s", label, err, describe(start, exists, deltas))
	}
	if !ok {
		if ex != exists || (ex && !state.Equal(start)) {
			t.Fatalf("%s: Merge says nothing to do, but one by one the object goes from %v (exists %v) to %v (exists %v)\n%s",
				label, start, exists, state, ex, describe(start, exists, deltas))
		}
		return true
	}
	if err := merged.Validate(); err != nil {
		t.Fatalf("%s: merged delta %s is invalid: %v", label, canonical(merged), err)
	}
	got, gotEx, err := Apply(start.Clone(), exists, merged)
	if err != nil {
		t.Fatalf("%s: merged delta %s does not apply: %v\n%s", label, canonical(merged), err, describe(start, exists, deltas))
	}
	if gotEx != ex || (ex && !got.Equal(state)) {
		t.Fatalf("%s: merged delta %s gives %v (exists %v); one by one gives %v (exists %v)\n%s",
			label, canonical(merged), got, gotEx, state, ex, describe(start, exists, deltas))
	}
	return true
}

func describe(start Attributes, exists bool, deltas []Delta) string {
	var b strings.Builder
	fmt.Fprintf(&b, "start %v exists=%v\n", start, exists)
	for i, d := range deltas {
		fmt.Fprintf(&b, "  %d: %s\n", i, canonical(d))
	}
	return b.String()
}

// Small alphabets make collisions (the same attribute, the same value) common.
var (
	genNames  = []string{"a", "b", "c"}
	genValues = []string{"x", "y", "z", ""}
)

func randAttrs(r *rand.Rand) Attributes {
	a := Attributes{}
	for range r.Intn(4) {
		n := genNames[r.Intn(len(genNames))]
		for range r.Intn(4) {
			a[n] = append(a[n], genValues[r.Intn(len(genValues))])
		}
		if r.Intn(8) == 0 {
			a[n] = []string{} // present but empty
		}
	}
	return a
}

func randValues(r *rand.Rand) []string {
	var v []string
	for range r.Intn(4) {
		v = append(v, genValues[r.Intn(len(genValues))])
	}
	return v
}

func randDelta(r *rand.Rand, exists bool) Delta {
	var t DeltaType
	if r.Intn(10) == 0 {
		t = DeltaType(r.Intn(4) + 1) // anything, most often invalid here
	} else if !exists {
		t = DeltaAdd
	} else {
		t = []DeltaType{DeltaModify, DeltaModify, DeltaModify, DeltaDelete, DeltaRecreate}[r.Intn(5)]
	}
	switch t {
	case DeltaAdd, DeltaRecreate:
		return Delta{Type: t, Attributes: randAttrs(r)}
	case DeltaModify:
		d := Delta{Type: DeltaModify}
		for range r.Intn(4) {
			d.Changes = append(d.Changes, AttributeDelta{Op: ModOp(r.Intn(3) + 1), Name: genNames[r.Intn(len(genNames))], Values: randValues(r)})
		}
		return d
	}
	return Delta{Type: DeltaDelete}
}

// TestMergeProperty checks Merge against Apply on random states and random
// delta sequences. Rerun a failure with -merge.seed=N.
func TestMergeProperty(t *testing.T) {
	t.Parallel()
	seed := *mergeSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -merge.seed=%d)", seed, seed)
	r := rand.New(rand.NewSource(seed))
	const rounds = 20000
	valid, nothing := 0, 0
	for i := range rounds {
		start, exists := randAttrs(r), r.Intn(2) == 0
		if !exists {
			start = nil
		}
		var deltas []Delta
		ex := exists
		for range r.Intn(7) {
			d := randDelta(r, ex)
			deltas = append(deltas, d)
			switch d.Type {
			case DeltaAdd, DeltaRecreate:
				ex = true
			case DeltaDelete:
				ex = false
			}
		}
		if checkMerge(t, fmt.Sprintf("seed %d round %d", seed, i), start, exists, deltas) {
			valid++
			if _, ok, _ := Merge(deltas); !ok {
				nothing++
			}
		}
	}
	// The generator must mostly produce valid histories, and some that
	// merge to nothing, or the property says little.
	if valid < rounds/3 || nothing == 0 {
		t.Fatalf("seed %d: only %d of %d sequences were valid histories (%d merged to nothing)", seed, valid, rounds, nothing)
	}
}

// decoder turns fuzz bytes into a state and a delta sequence. Bytes past the
// end read as zero.
type decoder struct {
	b []byte
	i int
}

func (d *decoder) next() int {
	if d.i >= len(d.b) {
		d.i++
		return 0
	}
	v := int(d.b[d.i])
	d.i++
	return v
}

func (d *decoder) done() bool { return d.i >= len(d.b) }

func (d *decoder) values() []string {
	n := d.next() % 4
	v := make([]string, 0, n)
	for range n {
		v = append(v, genValues[d.next()%len(genValues)])
	}
	return v
}

func (d *decoder) attrs() Attributes {
	a := Attributes{}
	for range d.next() % 4 {
		n := genNames[d.next()%len(genNames)]
		a[n] = append(a[n], d.values()...)
	}
	return a
}

// decodeMerge reads: a flags byte (bit 0: the object exists), the starting
// attributes, then deltas until the input ends (at most 16). Each delta
// starts with a type byte: below 0x80 a type valid for the current
// existence (add when absent; modify, delete or recreate when present),
// else any type including invalid ones.
func decodeMerge(data []byte) (Attributes, bool, []Delta) {
	d := &decoder{b: data}
	exists := d.next()&1 == 1
	start := d.attrs()
	if !exists {
		start = nil
	}
	var deltas []Delta
	ex := exists
	for !d.done() && len(deltas) < 16 {
		tb := d.next()
		var t DeltaType
		switch {
		case tb >= 0x80:
			t = DeltaType(tb % 5) // 0 is invalid
		case !ex:
			t = DeltaAdd
		default:
			t = []DeltaType{DeltaModify, DeltaDelete, DeltaRecreate}[tb%3]
		}
		var delta Delta
		switch t {
		case DeltaAdd, DeltaRecreate:
			delta = Delta{Type: t, Attributes: d.attrs()}
			ex = true
		case DeltaModify:
			delta = Delta{Type: t}
			for range d.next() % 5 {
				delta.Changes = append(delta.Changes, AttributeDelta{Op: ModOp(d.next() % 4), Name: genNames[d.next()%len(genNames)], Values: d.values()})
			}
		case DeltaDelete:
			delta = Delta{Type: t}
			ex = false
		default:
			delta = Delta{Type: t}
		}
		deltas = append(deltas, delta)
	}
	return start, exists, deltas
}

// FuzzMerge: go test -run=^$ -fuzz=FuzzMerge ./connector
func FuzzMerge(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 1, 0, 0})                                  // add, modify
	f.Add([]byte{1, 1, 0, 2, 1, 2, 0x00, 2, 1, 0, 1, 1, 2, 0, 1, 1}) // exists, modify with add then delete of one value
	f.Add([]byte{1, 0, 1, 0, 1})                                     // delete, add
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0})                         // add, modify, delete, add
	f.Fuzz(func(t *testing.T, data []byte) {
		start, exists, deltas := decodeMerge(data)
		checkMerge(t, "fuzz", start, exists, deltas)
	})
}
