package memstore

import (
	"cmp"
	"slices"
	"sort"
	"strings"
)

// maxBlock is the most records one block of an orderedSet holds before it
// splits. Inserting costs a binary search over the blocks, one within the
// block and a copy of at most maxBlock pointers, so a million records cost
// about as much to insert into as a thousand.
const maxBlock = 512

// orderedSet is a sorted set of records: a list of sorted blocks (a two-level
// B-tree). It serves the store's indexes in ID order (paging with After
// without sorting) and the due index in (NextDue, ID) order (a range scan for
// DueBy). Each element costs one pointer.
//
// The order MUST be total over the records in the set (every order used ends
// with the ID) and a record's key MUST NOT change while it is in the set: the
// store removes a record from its indexes before changing it.
type orderedSet struct {
	cmp    func(a, b *record) int
	blocks [][]*record
	n      int
}

func newOrderedSet(cmp func(a, b *record) int) *orderedSet {
	return &orderedSet{cmp: cmp}
}

func byID(a, b *record) int { return strings.Compare(a.id, b.id) }

func byDue(a, b *record) int {
	if c := cmp.Compare(a.sec[tNextDue], b.sec[tNextDue]); c != 0 {
		return c
	}
	if c := cmp.Compare(a.nsec[tNextDue], b.nsec[tNextDue]); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

func (o *orderedSet) len() int {
	if o == nil {
		return 0
	}
	return o.n
}

// blockFor returns the index of the block r belongs in: the last block whose
// first element is not after r, or 0.
func (o *orderedSet) blockFor(r *record) int {
	i := sort.Search(len(o.blocks), func(i int) bool { return o.cmp(o.blocks[i][0], r) > 0 })
	if i > 0 {
		i--
	}
	return i
}

func (o *orderedSet) insert(r *record) {
	if len(o.blocks) == 0 {
		o.blocks = [][]*record{{r}}
		o.n = 1
		return
	}
	bi := o.blockFor(r)
	b := o.blocks[bi]
	pos, found := slices.BinarySearchFunc(b, r, o.cmp)
	if found {
		return
	}
	b = slices.Insert(b, pos, r)
	o.n++
	if len(b) <= maxBlock {
		o.blocks[bi] = b
		return
	}
	half := len(b) / 2
	right := make([]*record, len(b)-half, maxBlock)
	copy(right, b[half:])
	clear(b[half:])
	o.blocks[bi] = b[:half]
	o.blocks = slices.Insert(o.blocks, bi+1, right)
}

func (o *orderedSet) remove(r *record) bool {
	if len(o.blocks) == 0 {
		return false
	}
	bi := o.blockFor(r)
	b := o.blocks[bi]
	pos, found := slices.BinarySearchFunc(b, r, o.cmp)
	if !found || b[pos] != r {
		return false
	}
	b = slices.Delete(b, pos, pos+1)
	o.n--
	if len(b) == 0 {
		o.blocks = slices.Delete(o.blocks, bi, bi+1)
	} else {
		o.blocks[bi] = b
	}
	return true
}

// ascend calls fn for every element in order, starting at the first one for
// which before reports false (before MUST be monotone: true for a prefix of
// the set), until fn returns false. A nil before starts at the beginning.
// fn MUST NOT change the set.
func (o *orderedSet) ascend(before func(*record) bool, fn func(*record) bool) {
	if o == nil {
		return
	}
	bi, start := 0, 0
	if before != nil {
		bi = sort.Search(len(o.blocks), func(i int) bool {
			b := o.blocks[i]
			return !before(b[len(b)-1])
		})
		if bi < len(o.blocks) {
			b := o.blocks[bi]
			start = sort.Search(len(b), func(j int) bool { return !before(b[j]) })
		}
	}
	for ; bi < len(o.blocks); bi++ {
		for _, r := range o.blocks[bi][start:] {
			if !fn(r) {
				return
			}
		}
		start = 0
	}
}
