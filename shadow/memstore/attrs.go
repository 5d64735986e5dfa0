package memstore

import (
	"encoding/binary"
	"strings"

	"github.com/umbra-idm/umbra/connector"
)

// The attribute cache is the bulk of a shadow, and a Go map of slices of
// strings costs several times the bytes it holds (map buckets, slice
// headers, one allocation per value). The store therefore keeps each
// shadow's attributes as one immutable string:
//
//	""                      nil attributes
//	uvarint(n) then n times: uvarint(len(name)) name uvarint(k) then k times uvarint(len(v)) v
//
// Decoding allocates the map and one []string for all values; the value
// strings are substrings of the encoded one, which is safe because strings
// are immutable.

func encodeAttrs(a connector.Attributes) string {
	if a == nil {
		return ""
	}
	size := binary.MaxVarintLen64
	for k, vs := range a {
		size += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vs {
			size += binary.MaxVarintLen64 + len(v)
		}
	}
	var b strings.Builder
	b.Grow(size)
	var buf [binary.MaxVarintLen64]byte
	putUvarint := func(n int) {
		b.Write(buf[:binary.PutUvarint(buf[:], uint64(n))])
	}
	putUvarint(len(a))
	for k, vs := range a {
		putUvarint(len(k))
		b.WriteString(k)
		putUvarint(len(vs))
		for _, v := range vs {
			putUvarint(len(v))
			b.WriteString(v)
		}
	}
	// The builder grew with worst-case varint sizes; copy only when that
	// wasted more than a quarter.
	if s := b.String(); b.Cap()-len(s) <= len(s)/4 {
		return s
	}
	return strings.Clone(b.String())
}

// decodeAttrs reverses encodeAttrs. The input is always the store's own
// encoding, so a malformed one is a bug and panics.
func decodeAttrs(s string) connector.Attributes {
	if s == "" {
		return nil
	}
	pos := 0
	next := func() int {
		n, w := uvarint(s[pos:])
		if w <= 0 {
			panic("memstore: corrupt attribute encoding")
		}
		pos += w
		return int(n)
	}
	str := func() string {
		n := next()
		v := s[pos : pos+n]
		pos += n
		return v
	}
	n := next()
	out := make(connector.Attributes, n)
	// First pass is the decoding itself; values are collected into one
	// backing slice, sized by a cheap pre-count.
	values := make([]string, 0, countValues(s))
	for range n {
		k := str()
		cnt := next()
		if cnt == 0 {
			out[k] = nil
			continue
		}
		first := len(values)
		for range cnt {
			values = append(values, str())
		}
		// Full slice expression: a caller appending to one attribute
		// must not overwrite the next one's values.
		out[k] = values[first:len(values):len(values)]
	}
	return out
}

// countValues returns the total number of values in an encoding.
func countValues(s string) int {
	pos := 0
	next := func() int {
		n, w := uvarint(s[pos:])
		pos += w
		return int(n)
	}
	total := 0
	for range next() {
		pos += next()
		cnt := next()
		total += cnt
		for range cnt {
			pos += next()
		}
	}
	return total
}

// uvarint is binary.Uvarint over a string, without converting it.
func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}
