// Package attrenc encodes connector.Attributes into one compact, immutable
// string and back. The in-memory store and the in-memory connector keep
// large numbers of attribute sets this way: a string holds no pointers for
// the garbage collector to scan and costs about the bytes it holds.
package attrenc

import (
	"encoding/binary"

	"github.com/umbra-idm/umbra/connector"
)

// The attribute cache is the bulk of a shadow, and a Go map of slices of
// strings costs several times the bytes it holds (map buckets, slice
// headers, one allocation per value). Stores of many objects (memstore's
// shadows, memconn's change log) therefore keep each attribute set as one
// immutable string:
//
//	""                      nil attributes
//	uvarint(n) then n times: uvarint(len(name)) name uvarint(k) then k times uvarint(len(v)) v
//
// Decoding allocates the map and one []string for all values; the value
// strings are substrings of the encoded one, which is safe because strings
// are immutable.

// Encode returns the encoding of a.
func Encode(a connector.Attributes) string {
	var buf []byte
	return EncodeBuf(a, &buf)
}

// EncodeBuf is Encode using *buf as scratch space (grown and
// kept for the next call): one pass over the map, and one allocation of
// exactly the encoded size for the result.
func EncodeBuf(a connector.Attributes, buf *[]byte) string {
	if a == nil {
		return ""
	}
	b := binary.AppendUvarint((*buf)[:0], uint64(len(a)))
	for k, vs := range a {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	*buf = b
	return string(b)
}

// Decode reverses Encode. The input is always the caller's own encoding,
// so a malformed one is a bug and panics.
func Decode(s string) connector.Attributes {
	if s == "" {
		return nil
	}
	pos := 0
	next := func() int {
		n, w := uvarint(s[pos:])
		if w <= 0 {
			panic("attrenc: corrupt attribute encoding")
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
