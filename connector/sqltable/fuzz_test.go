package sqltable

import (
	"strconv"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

// FuzzToken: on both dialects, any string either parses as a token whose
// formatted form parses back to the same position, or fails with
// CategorySchema quoting it and saying what a token looks like; and every
// position the connector can hand out (xid, seq ≥ 0) formats into a token
// that parses back to itself.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "0", "42", "007", "0:0", "12:34", "18446744073709551615:9223372036854775807",
		"18446744073709551616:1", "1:-1", "-1", ":", "1:", ":1", "1:2:3", "+1", " 1", "0x10", "1e3",
		"\x00", "\xff:1", "' OR 1=1 --", "accesslog:0"} {
		f.Add(s, uint64(7), int64(3))
	}
	f.Add("", uint64(0), int64(0))
	f.Add("", ^uint64(0), int64(1<<63-1))
	f.Fuzz(func(t *testing.T, s string, xid uint64, seq int64) {
		for _, c := range []*Connector{{dialect: SQLite}, {dialect: Postgres}} {
			tok, err := c.parseToken(connector.Token(s))
			if err != nil {
				if connector.Classify(err) != connector.CategorySchema || !strings.Contains(err.Error(), strconv.Quote(s)) ||
					!strings.Contains(err.Error(), c.tokenForm()) {
					t.Fatalf("dialect %d: parseToken(%q) = %v; want a schema error quoting it and naming the form", c.dialect, s, err)
				}
			} else {
				if tok.seq < 0 || c.dialect == SQLite && tok.xid != 0 {
					t.Fatalf("dialect %d: parseToken(%q) = %+v", c.dialect, s, tok)
				}
				again, err := c.parseToken(c.format(tok))
				if err != nil || again != tok {
					t.Fatalf("dialect %d: %q parses as %+v, formats as %q, which parses as %+v (%v)", c.dialect, s, tok, c.format(tok), again, err)
				}
			}

			if seq < 0 {
				seq = -(seq + 1)
			}
			want := token{xid: xid, seq: seq}
			if c.dialect == SQLite {
				want.xid = 0
			}
			got, err := c.parseToken(c.format(want))
			if err != nil || got != want {
				t.Fatalf("dialect %d: %+v formats as %q, which parses as %+v (%v)", c.dialect, want, c.format(want), got, err)
			}
		}
	})
}
