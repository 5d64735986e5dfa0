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

// parseAttrsJSON decodes the JSON of wireAttrs as json.Unmarshal does, for
// what appendAttrsJSON writes in the common case (and PostgreSQL's jsonb
// gives back, with its spaces): an object of plain names, each null or an
// array of strings, with no escapes. ok is false for anything else —
// escapes, binary values or names, invalid UTF-8, bad JSON — which the
// caller decodes with encoding/json. Reading a shadow decodes its
// attributes, and encoding/json (reflection, then UnmarshalJSON of every
// value list) was most of what correlating a change cost.
//
// The names and values are substrings of s.
func parseAttrsJSON(s string) (a connector.Attributes, ok bool) {
	p := attrsParser{s: s}
	p.space()
	if p.literal("null") {
		p.space()
		return nil, p.i == len(s)
	}
	if !p.byte('{') {
		return nil, false
	}
	a = make(connector.Attributes, 8)
	p.space()
	if p.byte('}') {
		p.space()
		return a, p.i == len(s)
	}
	for {
		p.space()
		k, ok := p.str()
		if !ok || strings.HasPrefix(k, binaryNamePrefix) {
			return nil, false
		}
		p.space()
		if !p.byte(':') {
			return nil, false
		}
		p.space()
		var vals []string
		if !p.literal("null") {
			if !p.byte('[') {
				return nil, false
			}
			vals = []string{}
			p.space()
			if !p.byte(']') {
				for {
					p.space()
					v, ok := p.str()
					if !ok {
						return nil, false
					}
					vals = append(vals, v)
					p.space()
					if p.byte(']') {
						break
					}
					if !p.byte(',') {
						return nil, false
					}
				}
			}
		}
		a[k] = vals
		p.space()
		if p.byte('}') {
			break
		}
		if !p.byte(',') {
			return nil, false
		}
	}
	p.space()
	return a, p.i == len(s)
}

// attrsParser reads JSON from s at i.
type attrsParser struct {
	s string
	i int
}

func (p *attrsParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (p *attrsParser) byte(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// literal consumes lit if it is next.
func (p *attrsParser) literal(lit string) bool {
	if strings.HasPrefix(p.s[p.i:], lit) {
		p.i += len(lit)
		return true
	}
	return false
}

// str consumes a string without escapes or control characters, in valid
// UTF-8, and returns its content.
func (p *attrsParser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start, ascii := p.i, true
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			if !ascii && !utf8.ValidString(v) {
				return "", false
			}
			return v, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return "", false
}
