package fuzzgen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/umbra-idm/umbra/shadow"
)

// storeCmp compares shadows as a store promises to keep them: times by
// instant (a store may hand them back in another location), absent and
// empty slices and maps alike.
var storeCmp = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmpopts.EquateEmpty(),
}

var resourceSeq atomic.Int64

// CheckRoundTrip decodes two shadows from data and checks, on st, that the
// first one created comes back from Get and List equal to what went in,
// that replacing it by the second with Update comes back equal too, and
// that Delete removes it. Each call works on a resource ID of its own, so
// calls may share a store.
//
// textOnly says that st keeps only text identifiers (PostgreSQL): then a
// shadow whose ID, ResourceID, Class, Kind, Intent, UID or Name is not
// text (invalid UTF-8, NUL) must be refused with shadow.ErrInvalid naming
// the field, and nothing written.
func CheckRoundTrip(t testing.TB, st shadow.Store, data []byte, textOnly bool) {
	t.Helper()
	ctx := context.Background()
	r := NewReader(data)
	res := fmt.Sprintf("fuzz-%d", resourceSeq.Add(1))
	in := r.Shadow(res)
	want := in.Clone()
	if field := binaryIdentifier(in); textOnly && field != "" {
		err := st.Create(ctx, in)
		if !errors.Is(err, shadow.ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Fatalf("Create of a shadow whose %s is not text: %v; want ErrInvalid naming %s", field, err, field)
		}
		if n, err := st.Count(ctx, shadow.Query{ResourceID: res}); err != nil || n != 0 {
			t.Fatalf("a refused Create left %d shadows (%v)", n, err)
		}
		return
	}
	if err := st.Create(ctx, in); err != nil {
		t.Fatalf("Create(%#v): %v", want, err)
	}
	if in.ID == "" || in.Version != 1 {
		t.Fatalf("Create set ID %q, Version %d; want an ID and version 1", in.ID, in.Version)
	}
	want.ID, want.Version, want.CreatedAt, want.UpdatedAt = in.ID, in.Version, in.CreatedAt, in.UpdatedAt
	check := func(step string) {
		t.Helper()
		got, err := st.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("%s: Get: %v", step, err)
		}
		if d := cmp.Diff(want, got, storeCmp); d != "" {
			t.Fatalf("%s: Get returned another shadow (-put +got):\n%s", step, d)
		}
		list, err := st.List(ctx, shadow.Query{ResourceID: res})
		if err != nil {
			t.Fatalf("%s: List: %v", step, err)
		}
		if len(list) != 1 {
			t.Fatalf("%s: List of the resource returned %d shadows, want 1", step, len(list))
		}
		if d := cmp.Diff(want, list[0], storeCmp); d != "" {
			t.Fatalf("%s: List returned another shadow (-put +got):\n%s", step, d)
		}
	}
	check("after Create")

	next := r.Shadow(res)
	next.ID, next.Version = want.ID, want.Version
	upd := next.Clone()
	if field := binaryIdentifier(next); textOnly && field != "" {
		err := st.Update(ctx, upd)
		if !errors.Is(err, shadow.ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Fatalf("Update to a shadow whose %s is not text: %v; want ErrInvalid naming %s", field, err, field)
		}
		check("after a refused Update")
		next = want.Clone()
		next.Pending = append(next.Pending, r.Pending(int64(len(next.Pending)+1)))
		upd = next.Clone()
	}
	if err := st.Update(ctx, upd); err != nil {
		t.Fatalf("Update(%#v): %v", next, err)
	}
	if upd.Version != want.Version+1 {
		t.Fatalf("Update set Version %d, want %d", upd.Version, want.Version+1)
	}
	next.Version, next.CreatedAt, next.UpdatedAt = upd.Version, want.CreatedAt, upd.UpdatedAt
	want = next
	check("after Update")

	if err := st.Delete(ctx, want.ID, want.Version); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := st.Get(ctx, want.ID); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
}

// binaryIdentifier returns the first identifier field of s that is not
// text, or "".
func binaryIdentifier(s *shadow.Shadow) string {
	for _, f := range []struct{ name, v string }{{"ResourceID", s.ResourceID}, {"Class", string(s.Class)},
		{"Kind", s.Kind}, {"Intent", s.Intent}, {"UID", s.UID}, {"Name", s.Name}} {
		if !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return f.name
		}
	}
	return ""
}

// Seeds returns inputs that decode to shadows worth starting from: empty,
// plain, binary and invalid UTF-8 values, every delta type.
func Seeds() [][]byte {
	return [][]byte{
		nil,
		[]byte("\x03\x02cn\x01\x05Alice\x01\x01\x02uid\x00\x00"),
		[]byte("\x05class\x04kind\x06intent\x03uid\x04name\x03\x03a\x00b\x02\x00\xff\x01\x0b\x01\x01\x02\x03" +
			"\x00\x02\x02cn\x01\x01x\x01\x00\x02\x01\x01\x01\x00\x00\x01\xff\xff\xff\xff\x07\x01\x00\x00\x00\x00\x00"),
		[]byte("\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xef\xee\xed\xec\xeb\xea\xe9\xe8\xe7\xe6\xe5\xe4\xe3\xe2\xe1\xe0"),
		[]byte("\x01\x00\x02{}\x02[]\x04null\x04\x01b64\x02\"\\\x01\x01\x03\x01\xc3\x01\x01\x01\x01\x01\x01\x01\x01\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03"),
	}
}
