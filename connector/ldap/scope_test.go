package ldap

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

// TestAccessLogScope checks which records are a class's changes: entries
// moved between bases, other object classes below the base, and entries
// below a one-level base.
func TestAccessLogScope(t *testing.T) {
	t.Parallel()
	ca, s, baseA := setup(t)
	baseB := newOU(t, s)
	cb := newConnector(t, testConfig(s, baseB))
	one := newConnector(t, func() Config {
		cfg := testConfig(s, baseA)
		cl := cfg.Classes[personClass]
		cl.Scope = ScopeOneLevel
		cfg.Classes = map[connector.ObjectClass]ClassConfig{personClass: cl}
		return cfg
	}())
	ctx := context.Background()
	tokA, _ := ca.LatestToken(ctx, personClass)
	tokB, _ := cb.LatestToken(ctx, personClass)
	tokOne, _ := one.LatestToken(ctx, personClass)
	adm := admin(t, s)

	p, err := ca.Add(ctx, personClass, person("mover"))
	if err != nil {
		t.Fatal(err)
	}
	// Another object class below the base, added and deleted.
	ou := goldap.NewAddRequest("ou=sub,"+baseA, nil)
	ou.Attribute("objectClass", []string{"organizationalUnit"})
	ou.Attribute("ou", []string{"sub"})
	if err := adm.Add(ou); err != nil {
		t.Fatal(err)
	}
	// A person one level further down: in the subtree, not in one level.
	deep := goldap.NewAddRequest("uid=deep,ou=sub,"+baseA, nil)
	deep.Attribute("objectClass", []string{"inetOrgPerson"})
	deep.Attribute("uid", []string{"deep"})
	deep.Attribute("cn", []string{"deep"})
	deep.Attribute("sn", []string{"deep"})
	if err := adm.Add(deep); err != nil {
		t.Fatal(err)
	}
	if err := adm.Del(goldap.NewDelRequest("uid=deep,ou=sub,"+baseA, nil)); err != nil {
		t.Fatal(err)
	}
	if err := adm.Del(goldap.NewDelRequest("ou=sub,"+baseA, nil)); err != nil {
		t.Fatal(err)
	}
	// Move the person from A to B, and back under a new name.
	if err := adm.ModifyDN(goldap.NewModifyDNRequest(p.ID.Name, "uid=mover", true, baseB)); err != nil {
		t.Fatal(err)
	}
	if err := adm.ModifyDN(goldap.NewModifyDNRequest("uid=mover,"+baseB, "uid=back", true, baseA)); err != nil {
		t.Fatal(err)
	}

	type seen struct {
		typ  connector.ChangeType
		name string
	}
	list := func(c *Connector, tok connector.Token) []seen {
		chs, _ := drain(t, c, tok, 0)
		var out []seen
		for _, ch := range chs {
			if ch.ID.UID != p.ID.UID && !strings.HasPrefix(ch.ID.Name, "uid=deep") {
				t.Errorf("change of another object: %+v", ch)
			}
			out = append(out, seen{ch.Type, strings.SplitN(ch.ID.Name, ",", 2)[0]})
		}
		return out
	}
	wantA := []seen{{connector.ChangeCreate, "uid=mover"}, {connector.ChangeCreate, "uid=deep"}, {connector.ChangeDelete, "uid=deep"},
		{connector.ChangeDelete, "uid=mover"}, {connector.ChangeCreate, "uid=back"}}
	wantB := []seen{{connector.ChangeCreate, "uid=mover"}, {connector.ChangeDelete, "uid=mover"}}
	wantOne := []seen{{connector.ChangeCreate, "uid=mover"}, {connector.ChangeDelete, "uid=mover"}, {connector.ChangeCreate, "uid=back"}}
	for _, tc := range []struct {
		name string
		got  []seen
		want []seen
	}{{"A", list(ca, tokA), wantA}, {"B", list(cb, tokB), wantB}, {"one level", list(one, tokOne), wantOne}} {
		if len(tc.got) != len(tc.want) {
			t.Errorf("%s: changes %v, want %v", tc.name, tc.got, tc.want)
			continue
		}
		for i := range tc.got {
			if tc.got[i] != tc.want[i] {
				t.Errorf("%s: changes %v, want %v", tc.name, tc.got, tc.want)
				break
			}
		}
	}
}

// TestAccessLogWithoutWatermark reads a log base without contextCSN (no
// syncprov there): the connector warns and reads without a watermark.
func TestAccessLogWithoutWatermark(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	c, _, base := setup(t)
	c2 := newConnector(t, func() Config {
		cfg := c.cfg
		cfg.BindPassword = c.password()
		cfg.AccessLogBase = base // an OU: no contextCSN, no records
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		return cfg
	}())
	ctx := context.Background()
	tok, err := c2.LatestToken(ctx, personClass)
	if err != nil || tok != "accesslog:0" {
		t.Fatalf("LatestToken = %q, %v; want accesslog:0", tok, err)
	}
	b, err := c2.FetchChanges(ctx, personClass, "", 0)
	if err != nil || len(b.Changes) != 0 || b.Token != "accesslog:0" {
		t.Fatalf("FetchChanges = %+v, %v", b, err)
	}
	if !strings.Contains(logs.String(), "contextCSN") || strings.Count(logs.String(), "contextCSN") != 1 {
		t.Fatalf("want one warning about contextCSN, got %q", logs.String())
	}
	// A missing log base is a configuration error.
	c3 := newConnector(t, func() Config {
		cfg := c.cfg
		cfg.BindPassword = c.password()
		cfg.AccessLogBase = "cn=nolog"
		cfg.Logger = nil
		return cfg
	}())
	if _, err := c3.LatestToken(ctx, personClass); catOf(t, err) != connector.CategoryConfiguration {
		t.Fatalf("missing log base: %v", err)
	}
	if err := c3.Test(ctx); catOf(t, err) != connector.CategoryConfiguration {
		t.Fatalf("Test with a missing log base: %v", err)
	}
}

func TestRecordParsing(t *testing.T) {
	t.Parallel()
	if v, ok := parseReqMod("mail:+ a@b: c"); !ok || v.attr != "mail" || v.op != "+" || v.value != "a@b: c" {
		t.Errorf("parseReqMod: %+v %v", v, ok)
	}
	if v, ok := parseReqMod("description:-"); !ok || v.op != "-" || v.value != "" {
		t.Errorf("parseReqMod without value: %+v %v", v, ok)
	}
	for _, bad := range []string{"", ":+ x", "nocolon"} {
		if _, ok := parseReqMod(bad); ok {
			t.Errorf("parseReqMod(%q) accepted", bad)
		}
	}
	if v, ok := parseReqOld("cn: a: b"); !ok || v.attr != "cn" || v.value != "a: b" {
		t.Errorf("parseReqOld: %+v %v", v, ok)
	}
	if _, ok := parseReqOld("garbage"); ok {
		t.Error("parseReqOld accepted garbage")
	}
	if _, ok := secondOf("20261122041800+0100"); ok {
		t.Error("secondOf accepted an offset")
	}
	if s, ok := secondOf("20261122041800.123Z"); !ok || s != "20261122041800Z" {
		t.Errorf("secondOf fraction: %q %v", s, ok)
	}
}

// TestCustomUIDAttribute uses uid as the primary identifier instead of
// entryUUID.
func TestCustomUIDAttribute(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t, func(cfg *Config) {
		cl := cfg.Classes[personClass]
		cl.UIDAttribute = "uid"
		cl.Attributes = []string{"uid", "cn", "sn", "mail"}
		cfg.Classes = map[connector.ObjectClass]ClassConfig{personClass: cl}
	})
	ctx := context.Background()
	tok, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	attrs := person("nina")
	attrs["description"] = []string{"not read back"}
	res, err := c.Add(ctx, personClass, attrs)
	if err != nil || res.ID.UID != "nina" {
		t.Fatalf("Add = %+v, %v; want UID nina", res.ID, err)
	}
	got, err := c.Get(ctx, personClass, connector.Identifiers{UID: "nina"})
	if err != nil || got.Attributes.Get("uid") != "nina" || got.Attributes["description"] != nil {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := c.Delete(ctx, personClass, connector.Identifiers{UID: "nina"}); err != nil {
		t.Fatal(err)
	}
	chs, _ := drain(t, c, tok, 0)
	if len(chs) != 2 || chs[0].ID.UID != "nina" || chs[1].ID.UID != "nina" || chs[1].Type != connector.ChangeDelete ||
		chs[0].Object["description"] != nil || chs[0].Object.Get("cn") != "Person nina" {
		t.Fatalf("changes %+v", chs)
	}
}
