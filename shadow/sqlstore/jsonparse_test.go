package sqlstore

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

// checkParseAttrs checks that parseAttrsJSON, when it takes text, decodes
// it as encoding/json does, and reports whether it took it.
func checkParseAttrs(t testing.TB, text string) bool {
	t.Helper()
	got, ok := parseAttrsJSON(text)
	if !ok {
		return false
	}
	var want wireAttrs
	if err := json.Unmarshal([]byte(text), &want); err != nil {
		t.Fatalf("parseAttrsJSON took %q, which encoding/json refuses: %v", text, err)
	}
	if !reflect.DeepEqual(got, connector.Attributes(want)) {
		t.Fatalf("parseAttrsJSON(%q) = %#v, encoding/json %#v", text, got, connector.Attributes(want))
	}
	return true
}

// TestParseAttrsJSON: the common attributes take the fast path, as written
// and as jsonb gives them back; anything it does not know goes to
// encoding/json.
func TestParseAttrsJSON(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		`null`, `{}`, ` { } `,
		string(appendAttrsJSON(nil, connector.Attributes{"cn": {"Ann"}, "mail": {"a@example.com", "b@example.com"}, "empty": {}, "nil": nil})),
		`{"cn": ["Ann", "ünïcødé ✓ 𝄞"], "empty": [], "nil": null}`,
		`{"a":["1"],"a":["2"]}`,
	} {
		if !checkParseAttrs(t, text) {
			t.Errorf("parseAttrsJSON refused %q", text)
		}
	}
	for _, text := range []string{
		``, `[]`, `{"a":"b"}`, `{"a":[1]}`, `{"a":[null]}`, `{"a":["b"]`, `{"a":["b"]} x`, `{"a" ["b"]}`,
		`{"a":["b",]}`, `{,}`, `{"a":["\u00e9"]}`, `{"\u0001b64:eA==":["v"]}`, `{"bin":[{"b64":"/w=="}]}`,
		"{\"a\":[\"\xff\"]}", "{\"a\":[\"tab\t\"]}",
	} {
		if checkParseAttrs(t, text) {
			t.Errorf("parseAttrsJSON took %q, which it should leave to encoding/json", text)
		}
	}
}

func FuzzParseAttrsJSON(f *testing.F) {
	f.Add(`{"cn": ["Ann"], "x": null, "e": []}`)
	f.Add(`{"a":["\u2028"]}`)
	f.Fuzz(func(t *testing.T, text string) { checkParseAttrs(t, text) })
}
