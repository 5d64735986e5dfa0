package ldap

import (
	"bytes"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

// FuzzEscapeRDNValue checks that any UTF-8 value, escaped, stays one RDN
// value: the DN parses into exactly the RDN and the base, with the value
// intact.
func FuzzEscapeRDNValue(f *testing.F) {
	for _, s := range append(hostile, "", " ", "#", "\\", "a\\", "=", "+", "\x00", "é", "\\2C", `"`) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		rdn, err := buildRDN("uid", v)
		if v == "" || !utf8.ValidString(v) {
			if err == nil {
				t.Fatalf("buildRDN accepted %q", v)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		dn, err := goldap.ParseDN(rdn + ",ou=people,dc=example,dc=com")
		if err != nil {
			t.Fatalf("escaped %q as %q, which does not parse: %v", v, rdn, err)
		}
		if len(dn.RDNs) != 4 || len(dn.RDNs[0].Attributes) != 1 {
			t.Fatalf("escaped %q as %q, which parses into %d RDNs", v, rdn, len(dn.RDNs))
		}
		got := dn.RDNs[0].Attributes[0]
		// go-ldap trims unescaped surrounding spaces; the escaper escapes
		// them, so the value must come back whole.
		if got.Type != "uid" || got.Value != v {
			t.Fatalf("escaped %q as %q, which parses back as %s=%q", v, rdn, got.Type, got.Value)
		}
		if r, p := splitRDN(rdn + ",ou=people,dc=example,dc=com"); r != rdn || !strings.HasPrefix(p, "ou=people") {
			t.Fatalf("splitRDN(%q) = %q, %q", rdn, r, p)
		}
	})
}

// fuzzConnector returns a connector (never dialled) with one class,
// "person", under ou=people,dc=example,dc=com.
func fuzzConnector(t testing.TB, strategy LiveSyncStrategy, scope Scope, uidAttr string) *Connector {
	t.Helper()
	c, err := New(Config{URL: "ldap://127.0.0.1:1", LiveSync: strategy, Classes: map[connector.ObjectClass]ClassConfig{
		"person": {BaseDN: "ou=people,dc=example,dc=com", LDAPObjectClasses: []string{"inetOrgPerson"},
			NamingAttribute: "uid", UIDAttribute: uidAttr, Scope: scope},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzToken: for both live sync strategies, any string is either a token
// of the strategy, whose value formats back into the same token, or a
// CategorySchema error quoting it; a token the connector builds (a CSN, or
// a second with up to maxBoundaryDigests digests) parses back to itself;
// and tokens order as the positions they stand for (CSNs compare as
// strings in time order, which the fetch relies on).
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "accesslog:0", "accesslog:20261122041801.003230Z#000000#000#000000",
		"accesslog:20261122041801.003230Z#00000A#000#000000", "accesslog:99999999999999.999999Z#ffffff#fff#ffffff",
		"accesslog:", "accesslog:1", "modifyTimestamp:20261122041801Z", "modifyTimestamp:20261122041801Z;AAAAAAAAAAA",
		"modifyTimestamp:20261122041801Z;", "modifyTimestamp:20261122041801Z;AAAAAAAAAAB", "modifyTimestamp:20261122041801.5Z",
		"modifyTimestamp:20261122041801+0100", "0", "*)(uid=*", "accesslog:0\x00", "\xff"} {
		f.Add(s, int64(1795407481003230), uint32(5), []byte("0123456789abcdef"))
	}
	f.Add("", int64(-62135596800000000), uint32(0), []byte{})
	f.Add("", int64(253402300799999999), uint32(1<<24-1), bytes.Repeat([]byte{7}, 8*65))
	f.Fuzz(func(t *testing.T, s string, micros int64, count uint32, digests []byte) {
		for _, strategy := range []LiveSyncStrategy{LiveSyncAccessLog, LiveSyncModifyTimestamp} {
			c := fuzzConnector(t, strategy, ScopeSubtree, "")
			v, err := c.parseToken("fetch", connector.Token(s))
			if err != nil {
				if connector.Classify(err) != connector.CategorySchema || !strings.Contains(err.Error(), strconv.Quote(s)) {
					t.Fatalf("%s: parseToken(%q) = %v; want a schema error quoting it", strategy, s, err)
				}
				continue
			}
			if s == "" {
				if v != "" {
					t.Fatalf("%s: the empty token parses as %q", strategy, v)
				}
				continue
			}
			if strategy == LiveSyncAccessLog {
				if accessLogPrefix+v != s {
					t.Fatalf("accesslog: %q parses as %q", s, v)
				}
				continue
			}
			ts, ok := parseTSToken(v)
			if !ok {
				t.Fatalf("modifyTimestamp: %q accepted, but its value %q does not parse", s, v)
			}
			again, err := c.parseToken("fetch", connector.Token(ts.String()))
			if err != nil {
				t.Fatalf("modifyTimestamp: %q parses as %+v, which formats as %q, refused: %v", s, ts, ts.String(), err)
			}
			if ts2, _ := parseTSToken(again); !sameTS(ts, ts2) {
				t.Fatalf("modifyTimestamp: %q parses as %+v, formats as %q, parses back as %+v", s, ts, ts.String(), ts2)
			}
		}

		// Encode, then decode.
		const minMicros, maxMicros = -62135596800000000, 253402300799999999 // years 1 to 9999
		micros = minMicros + int64(uint64(micros)%uint64(maxMicros-minMicros+1))
		at := time.UnixMicro(micros).UTC()
		csn := fmt.Sprintf("%s#%06x#%03x#%06x", at.Format("20060102150405.000000Z"), count&0xffffff, count>>24&0xfff, count&0xfff)
		c := fuzzConnector(t, LiveSyncAccessLog, ScopeSubtree, "")
		if v, err := c.parseToken("fetch", connector.Token(accessLogPrefix+csn)); err != nil || v != csn {
			t.Fatalf("accesslog: the token of CSN %q parses as %q (%v)", csn, v, err)
		}
		if got, ok := csnTime(csn); !ok || !got.Equal(at) {
			t.Fatalf("csnTime(%q) = %v, %v; want %v", csn, got, ok, at)
		}
		ceil := csnCeil(at)
		if csn > ceil || csnCeil(at.Add(-time.Microsecond)) >= csn {
			t.Fatalf("CSN %q is not within its microsecond's ceiling %q and the previous one's", csn, ceil)
		}
		later := at.Add(time.Duration(count%1000+1) * time.Microsecond)
		if later.Year() <= 9999 {
			if next := later.Format("20060102150405.000000Z") + "#000000#000#000000"; next <= csn {
				t.Fatalf("a CSN at %v (%q) does not sort after one at %v (%q)", later, next, at, csn)
			}
		}

		tok := tsToken{second: at.Truncate(time.Second).Format("20060102150405Z"), digests: map[[8]byte]bool{}}
		for i := 0; i+8 <= len(digests); i += 8 {
			tok.digests[[8]byte(digests[i:i+8])] = true
		}
		c = fuzzConnector(t, LiveSyncModifyTimestamp, ScopeSubtree, "")
		v, err := c.parseToken("fetch", connector.Token(tok.String()))
		if err != nil {
			t.Fatalf("modifyTimestamp: %+v formats as %q, which is refused: %v", tok, tok.String(), err)
		}
		back, _ := parseTSToken(v)
		want := tok
		if len(tok.digests) > maxBoundaryDigests {
			want.digests = map[[8]byte]bool{} // too many: the second is delivered again whole
		}
		if !sameTS(back, want) {
			t.Fatalf("modifyTimestamp: %+v formats as %q, parses back as %+v", tok, tok.String(), back)
		}
	})
}

func sameTS(a, b tsToken) bool {
	if a.second != b.second || len(a.digests) != len(b.digests) {
		return false
	}
	for k := range a.digests {
		if !b.digests[k] {
			return false
		}
	}
	return true
}

// FuzzChangeRecord: any access log record (reqType, reqDN, reqMod and
// reqOld lines, rename fields) maps to a valid change of the class or is
// skipped, never a panic; a change is always about an object in the class's
// scope; a create carries exactly the values its record added; and the
// reqMod and reqOld line formats parse back what they were built from.
func FuzzChangeRecord(f *testing.F) {
	const dn = "uid=alice,ou=people,dc=example,dc=com"
	f.Add("add", dn, "objectClass:+ inetOrgPerson\nuid:+ alice\ncn:+ Alice\nentryUUID:+ 1234", "", "", "", "", true)
	f.Add("delete", dn, "", "objectClass: inetOrgPerson\nuid: alice\nentryUUID: 1234", "", "", "", false)
	f.Add("modify", dn, "cn:= Alicia\nmail:+ a@example.com\nmail:-\ndescription:#", "cn: Alice", "", "", "", true)
	f.Add("modrdn", dn, "", "", "uid=bob", "", "", true)
	f.Add("modrdn", dn, "", "", "uid=bob", "ou=other,dc=example,dc=com", "", true)
	f.Add("modrdn", "uid=x,ou=other,dc=example,dc=com", "", "", "uid=y", "ou=people,dc=example,dc=com", "", false)
	f.Add("modrdn", dn, "", "", "", "", "uid=carol,ou=people,dc=example,dc=com", true)
	f.Add("extended", "ou=people,dc=example,dc=com", "", "", "", "", "", true)
	f.Add("add", "uid=*)(uid=*,ou=people,dc=example,dc=com", "objectClass:+ inetOrgPerson\n:+ x\nuid:", "", "", "", "", false)
	f.Add("add", "uid=\\00,ou=people,dc=example,dc=com", "objectClass:+ INETORGPERSON\nuid:+ \x00\xff", ": x\n:", "", "", "", true)
	f.Add("bogus", "not a dn", "\n\n:::", "::", "=", "=", "=", false)
	f.Fuzz(func(t *testing.T, typ, reqDN, mods, olds, newRDN, newSup, newDN string, oneLevel bool) {
		scope := ScopeSubtree
		if oneLevel {
			scope = ScopeOneLevel
		}
		for _, uidAttr := range []string{"entryUUID", "uid"} {
			c := fuzzConnector(t, LiveSyncAccessLog, scope, uidAttr)
			cl := c.classes["person"]
			attrs := map[string][]string{"reqType": {typ}, "reqDN": {reqDN}, "reqMod": strings.Split(mods, "\n"),
				"reqOld": strings.Split(olds, "\n"), "reqEntryUUID": {"uuid-" + reqDN}}
			for k, v := range map[string]string{"reqNewRDN": newRDN, "reqNewSuperior": newSup, "reqNewDN": newDN} {
				if v != "" {
					attrs[k] = []string{v}
				}
			}
			ch, ok := c.recordChange(cl, goldap.NewEntry("reqStart=20261122041801.003230Z,cn=accesslog", attrs))
			if !ok {
				continue
			}
			if err := ch.Validate(); err != nil {
				t.Fatalf("record %v maps to an invalid change %+v: %v", attrs, ch, err)
			}
			if ch.Class != "person" || !cl.inScope(ch.ID.Name) {
				t.Fatalf("record %v maps to a change of %q named %q, outside the class", attrs, ch.Class, ch.ID.Name)
			}
			if ch.OldName != "" && (ch.Type != connector.ChangeModify || ch.OldName != reqDN) {
				t.Fatalf("record %v: change %+v has OldName %q", attrs, ch, ch.OldName)
			}
			if ch.Type == connector.ChangeCreate && typ == "add" {
				for name, vs := range ch.Object {
					for _, v := range vs {
						if !strings.Contains("\n"+mods+"\n", "\n"+name+":+ "+v+"\n") {
							t.Fatalf("record %v: created object has %s=%q, which no reqMod added", attrs, name, v)
						}
					}
				}
			}
		}

		// A line that parses is exactly what its parts build; the line
		// formats, built from parts, parse back to the parts.
		for _, line := range strings.Split(mods, "\n") {
			if v, ok := parseReqMod(line); ok {
				back := v.attr + ":" + v.op
				if v.hasValue {
					back += " " + v.value
				}
				if back != line || !strings.Contains("+-=#", v.op) {
					t.Fatalf("parseReqMod(%q) = %+v, which is not the line", line, v)
				}
			}
		}
		for _, line := range strings.Split(mods, "\n") {
			attr, rest, _ := strings.Cut(line, ":")
			if !attrNameRE.MatchString(attr) {
				continue
			}
			for _, op := range []string{"+", "-", "=", "#"} {
				if got, ok := parseReqMod(attr + ":" + op + " " + rest); !ok || got != (logValue{attr, op, rest, true}) {
					t.Fatalf("parseReqMod(%q) = %+v, %v", attr+":"+op+" "+rest, got, ok)
				}
				if got, ok := parseReqMod(attr + ":" + op); !ok || got != (logValue{attr: attr, op: op}) {
					t.Fatalf("parseReqMod(%q) = %+v, %v", attr+":"+op, got, ok)
				}
			}
			if got, ok := parseReqOld(attr + ": " + rest); !ok || got != (logValue{attr: attr, value: rest, hasValue: true}) {
				t.Fatalf("parseReqOld(%q) = %+v, %v", attr+": "+rest, got, ok)
			}
		}
	})
}

// FuzzConfigValidate: validating any Config never panics, names the field
// of every error, never repeats the bind password; whatever passes builds a
// connector; and no way of printing or logging a Config shows the
// password.
func FuzzConfigValidate(f *testing.F) {
	f.Add("ldap://127.0.0.1:389", "cn=admin,dc=example,dc=com", "s3cret-pw", "accesslog", "cn=accesslog",
		"ou=people,dc=example,dc=com", "uid", "entryUUID", "inetOrgPerson", "cn,mail", int64(0), int64(0), 0, 0, false)
	f.Add("ldaps://h:636", "", "s3cret-pw", "modifyTimestamp", "", "", "", "", "", "*,+", int64(-1), int64(-1), -1, -1, true)
	f.Add("ldap://cn=admin:s3cret-pw@h", "cn=admin", "", "bogus", "not a dn", "not a dn", "cn;x", "1.2.3", "x y", "bad name", int64(1), int64(1), 1, 1, true)
	f.Add("http://h", "*)(uid=*", "s3cret-pw\x00", "", "=", "\xff", "", "", "", "", int64(0), int64(0), 0, 0, false)
	f.Add("ldap://[::1", "cn=a", "pw", "", "", "dc=x", "uid", "", "top", "", int64(0), int64(0), 0, 0, false)
	f.Fuzz(func(t *testing.T, url, bindDN, password, liveSync, accessLogBase, baseDN, naming, uidAttr, oc, attrs string,
		dial, op int64, page, pool int, startTLS bool) {
		cfg := Config{URL: url, BindDN: bindDN, BindPassword: password, LiveSync: LiveSyncStrategy(liveSync),
			AccessLogBase: accessLogBase, DialTimeout: time.Duration(dial), OpTimeout: time.Duration(op),
			PageSize: page, PoolSize: pool, TLS: TLSConfig{StartTLS: startTLS}}
		if baseDN != "" || naming != "" || oc != "" {
			cc := ClassConfig{BaseDN: baseDN, NamingAttribute: naming, UIDAttribute: uidAttr}
			if oc != "" {
				cc.LDAPObjectClasses = []string{oc}
			}
			if attrs != "" {
				cc.Attributes = strings.Split(attrs, ",")
			}
			cfg.Classes = map[connector.ObjectClass]ClassConfig{"person": cc}
		}
		shown, err := renderConfig(cfg)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "ldap: Config.") {
					t.Fatalf("Validate error line %q does not name a field", line)
				}
			}
		}
		// The same config with another password of the same length shows
		// the password no fewer times only when it is not shown at all (it
		// may stand in other fields, or in field names, by chance).
		if password == "" {
			return
		}
		other := cfg
		other.BindPassword = strings.Repeat("#", len(password))
		if strings.Trim(password, "#") == "" {
			other.BindPassword = strings.Repeat("%", len(password))
		}
		shownOther, _ := renderConfig(other)
		if n, m := strings.Count(shown, password), strings.Count(shownOther, password); n > m {
			i := strings.Index(shown, password)
			t.Fatalf("password %q shown: ...%s...", password, shown[max(0, i-80):min(len(shown), i+len(password)+20)])
		}
	})
}

// renderConfig validates cfg, builds a connector from it, and returns
// every text a host could see: the config printed and logged every way,
// the validation error and the connector's String. It fails when Validate
// and New disagree.
func renderConfig(cfg Config) (string, error) {
	err := cfg.Validate()
	c, nerr := New(cfg)
	if (err == nil) != (nerr == nil) {
		panic(fmt.Sprintf("Validate() = %v but New() = %v", err, nerr))
	}
	var buf bytes.Buffer
	noTime := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}}
	slog.New(slog.NewTextHandler(&buf, noTime)).Info("config", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&buf, noTime)).Info("config", "cfg", cfg)
	shown := fmt.Sprintf("%v %+v %#v %s %q", cfg, cfg, cfg, cfg, cfg) + cfg.String() + cfg.GoString() + buf.String()
	if err != nil {
		shown += err.Error()
	}
	if c != nil {
		shown += c.String()
		c.Close()
	}
	return shown, err
}
