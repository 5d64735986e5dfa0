package ldap

import (
	"fmt"
	"strings"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"
)

// escapeRDNValue escapes v for use as an attribute value in a DN string
// (RFC 4514 section 2.4). Beyond the characters the RFC requires, it
// escapes '=' and every control byte as hex, so that no value can change
// the structure of the DN. v MUST be valid UTF-8.
func escapeRDNValue(v string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(v) + 8)
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case ch == ' ' && (i == 0 || i == len(v)-1):
			b.WriteString(`\ `)
		case ch == '#' && i == 0:
			b.WriteString(`\#`)
		case ch == '"' || ch == '+' || ch == ',' || ch == ';' || ch == '<' || ch == '>' || ch == '\\' || ch == '=':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case ch < 0x20 || ch == 0x7f:
			b.WriteByte('\\')
			b.WriteByte(hexDigits[ch>>4])
			b.WriteByte(hexDigits[ch&0xf])
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// buildRDN returns attr=value as an escaped RDN. It refuses values a DN
// cannot carry: empty, or not UTF-8.
func buildRDN(attr, value string) (string, error) {
	if value == "" {
		return "", fmt.Errorf("naming attribute %q has an empty value", attr)
	}
	if !utf8.ValidString(value) {
		return "", fmt.Errorf("naming attribute %q: value is not valid UTF-8", attr)
	}
	return attr + "=" + escapeRDNValue(value), nil
}

// parseDN parses s, naming what in the request it was.
func parseDN(what, s string) (*goldap.DN, error) {
	dn, err := goldap.ParseDN(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a DN: %w", what, s, err)
	}
	return dn, nil
}

// under reports whether dn is base or below it (within one level when
// oneLevel), comparing case-insensitively.
func under(base, dn *goldap.DN, oneLevel bool) bool {
	if !base.AncestorOfFold(dn) {
		return false
	}
	return !oneLevel || len(dn.RDNs) == len(base.RDNs)+1
}

// rdnValue returns the value of attr in dn's first RDN.
func rdnValue(dn *goldap.DN, attr string) (string, bool) {
	if len(dn.RDNs) == 0 {
		return "", false
	}
	for _, a := range dn.RDNs[0].Attributes {
		if strings.EqualFold(a.Type, attr) {
			return a.Value, true
		}
	}
	return "", false
}

// classFilter returns the filter matching every object class in ocs.
func classFilter(ocs []string) string {
	var b strings.Builder
	b.WriteString("(&")
	for _, oc := range ocs {
		b.WriteString("(objectClass=")
		b.WriteString(goldap.EscapeFilter(oc))
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}

// eqFilter returns (attr=value) with value escaped.
func eqFilter(attr, value string) string {
	return "(" + attr + "=" + goldap.EscapeFilter(value) + ")"
}
