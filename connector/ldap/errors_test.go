package ldap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/testsvc"
)

func TestOutageAndRecovery(t *testing.T) {
	t.Parallel()
	sharedSlapd(t) // skip or fail as for every test when slapd is missing
	s := testsvc.StartSlapd(t)
	cfg := testConfig(s, s.PeopleDN)
	c := newConnector(t, cfg)
	ctx := context.Background()
	if err := c.Test(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := c.Add(ctx, personClass, person("gina"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// The pooled connections died with the server. Whatever the first
	// request finds, it is a communication error; after it, the pool is
	// empty and new connections are refused: not sent.
	_, err = c.Get(ctx, personClass, connector.Identifiers{UID: a.ID.UID})
	if !errors.Is(err, connector.ErrCommunication) {
		t.Fatalf("get while down: %v, want a communication error", err)
	}
	for name, call := range map[string]func() error{
		"add":    func() error { _, err := c.Add(ctx, personClass, person("hank")); return err },
		"modify": func() error { _, err := c.Modify(ctx, personClass, a.ID, nil); return err },
		"delete": func() error { _, err := c.Delete(ctx, personClass, a.ID); return err },
		"get":    func() error { _, err := c.Get(ctx, personClass, a.ID); return err },
		"search": func() error {
			return c.Search(ctx, personClass, connector.SearchOptions{}, func(connector.Object) error { return nil })
		},
		"test":   func() error { return c.Test(ctx) },
		"fetch":  func() error { _, err := c.FetchChanges(ctx, personClass, tok, 0); return err },
		"latest": func() error { _, err := c.LatestToken(ctx, personClass); return err },
	} {
		err := call()
		if catOf(t, err) != connector.CategoryNotSent {
			t.Errorf("%s while down: %v, want not sent", name, err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("%s: error %q does not say which server", name, err)
		}
	}
	// A fresh connector (no pool) gets not sent at once.
	c2 := newConnector(t, cfg)
	if _, err := c2.Add(ctx, personClass, person("hank")); catOf(t, err) != connector.CategoryNotSent {
		t.Fatalf("fresh connector while down: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Test(ctx); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if _, err := c.Add(ctx, personClass, person("hank")); err != nil {
		t.Fatalf("add after restart: %v", err)
	}
	b, err := c.FetchChanges(ctx, personClass, tok, 0)
	if err != nil || len(b.Changes) != 1 || b.Changes[0].Object.Get("uid") != "hank" {
		t.Fatalf("live sync after restart: %+v %v", b, err)
	}
}

func TestErrorCategories(t *testing.T) {
	t.Parallel()
	c, s, base := setup(t)
	ctx := context.Background()

	bad := testConfig(s, base)
	bad.BindPassword = "wrong-password-123"
	cb := newConnector(t, bad)
	err := cb.Test(ctx)
	if catOf(t, err) != connector.CategoryConfiguration {
		t.Fatalf("wrong password: %v, want configuration", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), bad.BindPassword) {
		t.Fatal("error contains the password")
	}

	missing := testConfig(s, "ou=missing,"+s.BaseDN)
	cm := newConnector(t, missing)
	if err := cm.Test(ctx); catOf(t, err) != connector.CategoryConfiguration || !strings.Contains(err.Error(), "ou=missing") {
		t.Fatalf("missing base: %v", err)
	}
	if err := cm.Search(ctx, personClass, connector.SearchOptions{}, func(connector.Object) error { return nil }); catOf(t, err) != connector.CategoryConfiguration {
		t.Fatalf("search of missing base: %v", err)
	}

	// Anonymous writes need authentication: configuration.
	anon := testConfig(s, base)
	anon.BindDN, anon.BindPassword = "", ""
	ca := newConnector(t, anon)
	if _, err := ca.Add(ctx, personClass, person("ivan")); catOf(t, err) != connector.CategoryConfiguration {
		t.Fatalf("anonymous add: %v", err)
	}
	if _, err := ca.Get(ctx, personClass, connector.Identifiers{Name: "uid=ivan," + base}); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("anonymous read: %v", err)
	}
	// A user may read but not write: permission.
	user := person("reader")
	user["userPassword"] = []string{"reader-pw"}
	u, err := c.Add(ctx, personClass, user)
	if err != nil {
		t.Fatal(err)
	}
	ro := testConfig(s, base)
	ro.BindDN, ro.BindPassword = u.ID.Name, "reader-pw"
	cr := newConnector(t, ro)
	if _, err := cr.Add(ctx, personClass, person("ivan")); catOf(t, err) != connector.CategoryPermission {
		t.Fatalf("read-only add: %v", err)
	}

	// Invalid syntax: schema.
	_, err = c.Add(ctx, personClass, connector.Attributes{"uid": {"jo"}, "cn": {"x"}, "sn": {"y"}, "telephoneNumber": {"not a phone ☎"}})
	if catOf(t, err) != connector.CategorySchema {
		t.Fatalf("bad syntax: %v", err)
	}

	// Deleting a non-leaf: policy.
	if _, err := c.Add(ctx, personClass, person("parent")); err != nil {
		t.Fatal(err)
	}
	child := goldap.NewAddRequest("ou=child,uid=parent,"+base, nil)
	child.Attribute("objectClass", []string{"organizationalUnit"})
	child.Attribute("ou", []string{"child"})
	if err := admin(t, s).Add(child); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, personClass, connector.Identifiers{Name: "uid=parent," + base}); catOf(t, err) != connector.CategoryPolicy {
		t.Fatalf("delete of non-leaf: %v", err)
	}

	// A cancelled context: nothing sent.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Add(cctx, personClass, person("kim")); catOf(t, err) != connector.CategoryNotSent || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled add: %v", err)
	}
}

func TestCategoryTable(t *testing.T) {
	t.Parallel()
	for code, want := range map[uint16]connector.Category{
		68: connector.CategoryAlreadyExists, 32: connector.CategoryNotFound,
		17: connector.CategorySchema, 21: connector.CategorySchema, 65: connector.CategorySchema,
		18: connector.CategorySchema, 20: connector.CategorySchema, 69: connector.CategorySchema,
		49: connector.CategoryConfiguration, 50: connector.CategoryPermission, 19: connector.CategoryPolicy,
		51: connector.CategoryThrottled, 52: connector.CategoryNotSent, 53: connector.CategoryPolicy,
		85: connector.CategoryOutcomeUnknown, 80: connector.CategoryGeneric, 1: connector.CategoryGeneric,
	} {
		if got := classify(goldap.NewError(code, errors.New("x"))); got != want {
			t.Errorf("result %d: %v, want %v", code, got, want)
		}
	}
	for msg, want := range map[string]connector.Category{
		"ldap: connection closed":       connector.CategoryNotSent,
		"ldap: connection timed out":    connector.CategoryOutcomeUnknown,
		"ldap: response channel closed": connector.CategoryOutcomeUnknown,
	} {
		if got := classify(goldap.NewError(goldap.ErrorNetwork, errors.New(msg))); got != want {
			t.Errorf("network error %q: %v, want %v", msg, got, want)
		}
	}
	if got := classify(errors.New("unable to send request: broken pipe")); got != connector.CategoryNotSent {
		t.Errorf("failed write: %v", got)
	}
	if got := classify(errors.New("unable to read LDAP response packet: EOF")); got != connector.CategoryOutcomeUnknown {
		t.Errorf("lost response: %v", got)
	}
	if isConnectionError(goldap.NewError(32, errors.New("x"))) || !isConnectionError(errors.New("x")) ||
		isConnectionError(newError(connector.CategoryNotFound, "get", "gone")) ||
		!isConnectionError(newError(connector.CategoryOutcomeUnknown, "add", "lost")) ||
		!isConnectionError(&connector.Error{Category: connector.CategoryGeneric, Err: goldap.NewError(goldap.ErrorNetwork, errors.New("x"))}) {
		t.Error("isConnectionError")
	}
}

func TestOpTimeoutIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	sharedSlapd(t)
	s := testsvc.StartSlapd(t)
	c := newConnector(t, testConfig(s, s.PeopleDN))
	ctx := context.Background()
	if err := c.Test(ctx); err != nil {
		t.Fatal(err)
	}
	// A stopped (SIGSTOP) server accepts nothing and answers nothing: the
	// request goes out on the pooled connection and times out.
	if err := stopProcess(s.PID(), true); err != nil {
		t.Fatal(err)
	}
	defer stopProcess(s.PID(), false)
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := c.Add(tctx, personClass, person("lou"))
	if catOf(t, err) != connector.CategoryOutcomeUnknown {
		t.Fatalf("add to a hung server: %v, want outcome unknown", err)
	}
	gctx, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := c.Get(gctx, personClass, connector.Identifiers{Name: "uid=lou," + s.PeopleDN}); !errors.Is(err, connector.ErrCommunication) {
		t.Fatalf("get from a hung server: %v", err)
	}
	if err := stopProcess(s.PID(), false); err != nil {
		t.Fatal(err)
	}
	if err := c.Test(ctx); err != nil {
		t.Fatalf("after resume: %v", err)
	}
}

func TestLoggerAndString(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	c, _, _ := setup(t, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if err := c.Test(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "connected") {
		t.Fatalf("no connection log: %q", buf.String())
	}
	if strings.Contains(buf.String(), c.password()) || strings.Contains(c.String(), c.password()) {
		t.Fatal("password logged")
	}
}

// TestSizeLimitIsConfiguration lists more entries than the server lets a
// plain user see (the test slapd's olcSizeLimit is 500): the search must
// fail, not pass for complete.
func TestSizeLimitIsConfiguration(t *testing.T) {
	t.Parallel()
	c, s, base := setup(t, func(cfg *Config) { cfg.LiveSync = LiveSyncModifyTimestamp })
	ctx := context.Background()
	u := person("limited")
	u["userPassword"] = []string{"limited-pw"}
	r, err := c.Add(ctx, personClass, u)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 510 {
		if _, err := c.Add(ctx, personClass, person(fmt.Sprint("many", i))); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(s, base)
	cfg.BindDN, cfg.BindPassword = r.ID.Name, "limited-pw"
	cfg.LiveSync = LiveSyncModifyTimestamp
	ro := newConnector(t, cfg)
	n := 0
	err = ro.Search(ctx, personClass, connector.SearchOptions{PageSize: 100}, func(connector.Object) error { n++; return nil })
	if catOf(t, err) != connector.CategoryConfiguration || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("search past the size limit: %v after %d objects", err, n)
	}
	if _, err := ro.FetchChanges(ctx, personClass, "", 0); catOf(t, err) != connector.CategoryConfiguration {
		t.Fatalf("fetch past the size limit: %v", err)
	}
	// The admin has no limit.
	n = 0
	if err := c.Search(ctx, personClass, connector.SearchOptions{PageSize: 100}, func(connector.Object) error { n++; return nil }); err != nil || n != 511 {
		t.Fatalf("admin search: %d objects, %v", n, err)
	}
}
