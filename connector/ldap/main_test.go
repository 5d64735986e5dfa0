package ldap

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/testsvc"
)

// shared is the slapd most tests use; each test works in its own
// organizational unit. Tests that stop the server start their own.
var (
	shared      *testsvc.Slapd
	sharedErr   error
	sharedCount atomic.Int64
)

func TestMain(m *testing.M) {
	shared, sharedErr = testsvc.NewSlapd()
	code := m.Run()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping slapd:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedSlapd returns the shared slapd, skipping t (failing it with
// UMBRA_FULL=1) when slapd is not installed.
func sharedSlapd(t testing.TB) *testsvc.Slapd {
	t.Helper()
	if sharedErr != nil {
		msg, fail := testsvc.SkipOrFail(sharedErr)
		if fail {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return shared
}

// admin opens a raw connection bound as the admin, for test setup.
func admin(t testing.TB, s *testsvc.Slapd) *goldap.Conn {
	t.Helper()
	conn, err := goldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Bind(s.AdminDN, s.AdminPassword); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// newOU creates a fresh organizational unit for one test and returns its DN.
func newOU(t testing.TB, s *testsvc.Slapd) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", sharedCount.Add(1), strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	dn := "ou=" + escapeRDNValue(name) + "," + s.BaseDN
	req := goldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"organizationalUnit"})
	req.Attribute("ou", []string{name})
	if err := admin(t, s).Add(req); err != nil {
		t.Fatalf("creating %s: %v", dn, err)
	}
	return dn
}

const personClass connector.ObjectClass = "person"

// testConfig returns a config for s with class "person" (inetOrgPerson
// named by uid) under base.
func testConfig(s *testsvc.Slapd, base string) Config {
	return Config{
		URL: s.URL, BindDN: s.AdminDN, BindPassword: s.AdminPassword,
		Classes: map[connector.ObjectClass]ClassConfig{
			personClass: {BaseDN: base, LDAPObjectClasses: []string{"inetOrgPerson"}, NamingAttribute: "uid"},
		},
		LiveSync: LiveSyncAccessLog,
	}
}

func newConnector(t testing.TB, cfg Config) *Connector {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// setup returns a connector on the shared slapd working in a fresh OU.
func setup(t testing.TB, mutate ...func(*Config)) (*Connector, *testsvc.Slapd, string) {
	t.Helper()
	s := sharedSlapd(t)
	base := newOU(t, s)
	cfg := testConfig(s, base)
	for _, m := range mutate {
		m(&cfg)
	}
	return newConnector(t, cfg), s, base
}

func person(uid string) connector.Attributes {
	return connector.Attributes{"uid": {uid}, "cn": {"Person " + uid}, "sn": {"Test"}}
}

func catOf(t testing.TB, err error) connector.Category {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	var ce *connector.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *connector.Error", err, err)
	}
	return ce.Category
}
