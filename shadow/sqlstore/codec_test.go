package sqlstore

import (
	"database/sql"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

func TestPlainValuesStayPlainJSON(t *testing.T) {
	t.Parallel()
	got, err := encodeAttributes(connector.Attributes{"cn": {"Jöns"}, "mail": {"a@b"}})
	if err != nil {
		t.Fatal(err)
	}
	if got != `{"cn":["Jöns"],"mail":["a@b"]}` {
		t.Fatalf("text attributes encode as %s; want plain JSON that jsonb operators can query", got)
	}
	if v, _ := encodeAttributes(nil); v != nil {
		t.Fatalf("nil attributes encode as %v, want NULL", v)
	}
}

// FuzzCodecRoundTrip: any attribute name and values, in the cache, in a
// pending delta and in a set-aside change, come back as they went in.
func FuzzCodecRoundTrip(f *testing.F) {
	f.Add("cn", "Jöns", "")
	f.Add("photo", "\x00\xff\xfe", "\x01b64:AAAA")
	f.Add("\x01b64:x", `{"b64":"AAAA"}`, "\xc3")
	f.Add("", "", "\u2028")
	f.Fuzz(func(t *testing.T, name, v1, v2 string) {
		attrs := connector.Attributes{name: {v1, v2}}
		enc, err := encodeAttributes(attrs)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := decodeAttributes(sql.NullString{String: enc.(string), Valid: true})
		if err != nil {
			t.Fatalf("decode %s: %v", enc, err)
		}
		if !dec.Equal(attrs) {
			t.Fatalf("attributes %q came back as %q", attrs, dec)
		}

		at := time.Unix(1e9, 123456789)
		ops := []shadow.PendingOperation{{ID: 1, Type: shadow.OpGrouped, Status: shadow.StatusRequested, Result: shadow.ResultInProgress,
			Delta:       connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{{Op: connector.AddValues, Name: name, Values: []string{v1, v2}}}},
			RequestedAt: at, LastError: v1, AsyncRef: v2}}
		penc, err := encodePending(ops)
		if err != nil {
			t.Fatal(err)
		}
		pdec, err := decodePending(sql.NullString{String: penc.(string), Valid: true})
		if err != nil {
			t.Fatalf("decode %s: %v", penc, err)
		}
		c := pdec[0].Delta.Changes[0]
		if c.Name != name || c.Values[0] != v1 || c.Values[1] != v2 || !pdec[0].RequestedAt.Equal(at.Truncate(time.Microsecond)) {
			t.Fatalf("pending operation %+v came back as %+v", ops[0], pdec[0])
		}

		ch := connector.Change{Type: connector.ChangeModify, Class: "c", ID: connector.Identifiers{UID: v1, Name: v2}, Object: attrs, Token: "t"}
		cenc, err := encodeChange(ch)
		if err != nil {
			t.Fatal(err)
		}
		cdec, err := decodeChange(cenc)
		if err != nil {
			t.Fatalf("decode %s: %v", cenc, err)
		}
		if !cdec.Object.Equal(attrs) || cdec.Type != ch.Type || cdec.Token != ch.Token {
			t.Fatalf("change %+v came back as %+v", ch, cdec)
		}
	})
}
