package sqlstore

import (
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/internal/fuzzgen"
)

// FuzzStoreRoundTrip: any valid shadow, with any pending operations and
// any bytes in its strings, comes back from SQLite and PostgreSQL exactly as
// it went in (go-cmp), through Create, Get, List, Update and Delete. The
// PostgreSQL refuses identifiers that are not text with
// shadow.ErrInvalid naming the field. The JSON encoding alone is fuzzed by FuzzCodecRoundTrip; this goes through
// the columns, the indexes and the drivers as well.
func FuzzStoreRoundTrip(f *testing.F) {
	for _, s := range fuzzgen.Seeds() {
		f.Add(s)
	}
	stores := []*Store{newSQLite(f, nil), newPostgres(f, nil)}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, st := range stores {
			fuzzgen.CheckRoundTrip(t, st, data, st.d.textOnly)
		}
	})
}

// FuzzOptionsValidate: validating any Options never panics, on either
// dialect; a rejected value is named with its field, and a value that
// passes is a safe identifier (it is put in SQL unquoted).
func FuzzOptionsValidate(f *testing.F) {
	f.Add(int64(0), 0, "", "")
	f.Add(int64(-1), -1, "umbra_", "public")
	f.Add(int64(time.Second), 8, "Bad-Prefix", "x; DROP TABLE t; --")
	f.Add(int64(0), 0, strings.Repeat("a", 31), strings.Repeat("s", 64))
	f.Add(int64(0), 0, "p\x00", "\xff")
	f.Fuzz(func(t *testing.T, busy int64, conns int, prefix, schema string) {
		for _, d := range []*dialect{sqliteDialect, postgresDialect} {
			o := Options{BusyTimeout: time.Duration(busy), MaxOpenConns: conns, TablePrefix: prefix, Schema: schema}.withDefaults()
			err := o.validate(d)
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			want := func(bad bool, field string) {
				t.Helper()
				if bad != strings.Contains(msg, "Options."+field) {
					t.Fatalf("%s: %+v: bad %s = %v, but the error is %q", d.name, o, field, bad, msg)
				}
			}
			want(o.BusyTimeout < 0, "BusyTimeout")
			want(o.MaxOpenConns < 0, "MaxOpenConns")
			want(!safeIdent(o.TablePrefix, 30), "TablePrefix")
			want(o.Schema != "" && (!d.schemas || !safeIdent(o.Schema, 63)), "Schema")
		}
	})
}

// safeIdent is the rule validate enforces, written out plainly.
func safeIdent(s string, max int) bool {
	if s == "" || len(s) > max || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
