package sqlstore

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

// referenceAttrsJSON is the attributes' JSON as encoding/json writes it,
// through the wire types: what appendAttrsJSON must reproduce byte for byte.
func referenceAttrsJSON(t testing.TB, a connector.Attributes) []byte {
	if a == nil {
		return []byte("null")
	}
	m := make(map[string]wireValues, len(a))
	for k, v := range a {
		if !plainText(k) || strings.HasPrefix(k, binaryNamePrefix) {
			bv, err := json.Marshal([]byte(k))
			if err != nil {
				t.Fatal(err)
			}
			k = binaryNamePrefix + string(bytes.Trim(bv, `"`))
		}
		m[k] = wireValues(v)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkAttrsJSON(t testing.TB, a connector.Attributes) {
	got, want := appendAttrsJSON(nil, a), referenceAttrsJSON(t, a)
	if !bytes.Equal(got, want) {
		t.Fatalf("attributes %q:\n got %s\nwant %s", a, got, want)
	}
	var back wireAttrs
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("attributes %q: %s does not decode: %v", a, got, err)
	}
	if !connector.Attributes(back).Equal(a) && len(a) > 0 {
		t.Fatalf("attributes %q came back as %q", a, back)
	}
}

func TestAttrsJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, a := range []connector.Attributes{
		nil, {}, {"cn": {"Ann"}, "mail": {"a@example.com", "b@example.com"}, "empty": {}, "nil": nil},
		{"html": {"<b>&amp;</b>", `quote " backslash \ slash /`}, "ctl": {"\b\f\n\r\t\x01\x1f\x7f"}},
		{"sep": {"line\u2028para\u2029", "ünïcødé ✓ 𝄞"}, "bin": {"\xff\xfe", "nul\x00"}},
		{"\xffname": {"v"}, binaryNamePrefix + "x": {"w"}, "": {""}},
	} {
		checkAttrsJSON(t, a)
	}
}

func FuzzAttrsJSON(f *testing.F) {
	f.Add("cn", "Ann <ann@example.com>", "\u2028\x00\xff")
	f.Add("\x01b64:", "", "\t")
	f.Fuzz(func(t *testing.T, k, v1, v2 string) {
		checkAttrsJSON(t, connector.Attributes{k: {v1, v2}, "other": {v2}})
	})
}
