package sqlstore

import (
	"encoding/base64"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/umbra-idm/umbra/connector"
)

// appendAttrsJSON appends the JSON of wireAttrs(a) to b: the bytes
// encoding/json writes for it (keys sorted, strings escaped as it escapes
// them, HTML characters included), without its reflection and the
// re-validation of every nested MarshalJSON result. Attributes are most of
// every shadow write, and this was a quarter of a write's CPU.
func appendAttrsJSON(b []byte, a connector.Attributes) []byte {
	if a == nil {
		return append(b, "null"...)
	}
	type entry struct {
		key  string
		vals []string
	}
	var buf [16]entry
	entries := buf[:0]
	for k, v := range a {
		if !plainText(k) || strings.HasPrefix(k, binaryNamePrefix) {
			k = binaryNamePrefix + base64.StdEncoding.EncodeToString([]byte(k))
		}
		entries = append(entries, entry{k, v})
	}
	slices.SortFunc(entries, func(x, y entry) int { return strings.Compare(x.key, y.key) })
	b = append(b, '{')
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.key)
		b = append(b, ':')
		b = appendValuesJSON(b, e.vals)
	}
	return append(b, '}')
}

// appendValuesJSON appends the JSON of wireValues(vs).
func appendValuesJSON(b []byte, vs []string) []byte {
	if vs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		if plainText(v) {
			b = appendJSONString(b, v)
			continue
		}
		b = append(b, `{"b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, []byte(v))
		b = append(b, `"}`...)
	}
	return append(b, ']')
}

// appendJSONString appends s, valid UTF-8, as a JSON string escaped as
// encoding/json escapes it.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
