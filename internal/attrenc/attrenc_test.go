package attrenc_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/attrenc"
)

func TestAttrsEncoding(t *testing.T) {
	t.Parallel()
	for _, a := range []connector.Attributes{
		nil,
		{},
		{"cn": {"A"}},
		{"empty": nil, "also-empty": {}},
		{"multi": {"a", "b", "c", ""}, "bin": {"\x00\x80\xff"}, "": {"empty name"}},
		{"long": {strings.Repeat("x", 300), strings.Repeat("y", 70000)}},
	} {
		enc := attrenc.Encode(a)
		got := attrenc.Decode(enc)
		if (a == nil) != (got == nil) {
			t.Fatalf("nil-ness of %v lost: got %v", a, got)
		}
		if len(got) != len(a) {
			t.Fatalf("decoded %d attributes, want %d", len(got), len(a))
		}
		for k, v := range a {
			if gv, ok := got[k]; !ok || !slices.Equal(gv, v) {
				t.Fatalf("attribute %q: got %q, want %q", k, gv, v)
			}
		}
		// Appending to one decoded attribute does not touch another.
		for k := range got {
			got[k] = append(got[k], "appended")
		}
		for k, v := range attrenc.Decode(enc) {
			if slices.Contains(v, "appended") {
				t.Fatalf("attribute %q shares storage with the encoding", k)
			}
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("decoding a corrupt encoding did not panic")
		}
	}()
	attrenc.Decode("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
}

func FuzzAttrsEncoding(f *testing.F) {
	f.Add("cn", "a", "b", "mail", "x@example.org")
	f.Add("", "", "", "", "")
	f.Add("bin", "\x00\xff", "\x80", "k\x00", "v")
	f.Fuzz(func(t *testing.T, k1, v1, v2, k2, v3 string) {
		a := connector.Attributes{k1: {v1, v2}}
		a[k2] = append(a[k2], v3)
		got := attrenc.Decode(attrenc.Encode(a))
		if len(got) != len(a) {
			t.Fatalf("decoded %d attributes, want %d", len(got), len(a))
		}
		for k, v := range a {
			if !slices.Equal(got[k], v) {
				t.Fatalf("attribute %q: got %q, want %q", k, got[k], v)
			}
		}
	})
}
