package security_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/ldap"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// witness collects everything a host could show an operator: log lines,
// error strings, printed values.
type witness struct {
	mu   sync.Mutex
	logs bytes.Buffer // written by the slog handlers (they serialize)
	seen []string
}

// logger returns a logger that writes every record, debug included, as
// text and as JSON.
func (w *witness) logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true}
	return slog.New(teeHandler{slog.NewTextHandler(&w.logs, opts), slog.NewJSONHandler(&w.logs, opts)})
}

// err records err's text (nil is fine) with every verb.
func (w *witness) err(what string, err error) {
	if err == nil {
		return
	}
	w.add(what, fmt.Sprintf("%v | %+v | %s | %q | %#v", err, err, err, err, err))
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		w.add(what+" (unwrapped)", u.Error())
	}
}

// print records v printed with every verb a host might use.
func (w *witness) print(what string, vs ...any) {
	for _, v := range vs {
		w.add(what, fmt.Sprintf("%v | %+v | %#v | %s | %q", v, v, v, v, v))
		w.logger().Info("printing", "what", what, "value", v)
	}
}

func (w *witness) add(what, s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, what+": "+s)
}

// check fails t for every text that shows a secret.
func (w *witness) check(t *testing.T, secrets map[string]string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	texts := append([]string{"log: " + w.logs.String()}, w.seen...)
	for name, secret := range secrets {
		for _, text := range texts {
			if i := strings.Index(text, secret); i >= 0 {
				what, _, _ := strings.Cut(text, ": ")
				t.Errorf("%s shown in %s: ...%s...", name, what, text[max(0, i-120):min(len(text), i+len(secret)+40)])
			}
		}
	}
	if w.logs.Len() == 0 {
		t.Error("no log line was captured: the scenario proves nothing about logs")
	}
}

// teeHandler sends every record to all its handlers.
type teeHandler []slog.Handler

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, x := range h {
		if err := x.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(teeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithAttrs(as)
	}
	return out
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithGroup(name)
	}
	return out
}

func secret(t *testing.T, prefix string) string {
	t.Helper()
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// withPassword returns dsn with its password set to pw (URL or key=value
// form).
func withPassword(t *testing.T, dsn, pw string) string {
	t.Helper()
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.User = url.UserPassword(u.User.Username(), pw)
		return u.String()
	}
	return dsn + " password=" + pw
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestSecretsNeverShown runs live sync, provisioning, refresh and
// propagation against slapd and PostgreSQL with known passwords, then
// fails binds and connections in every way at hand, and asserts that
// neither the LDAP bind password nor the PostgreSQL password (nor the
// wrong passwords tried) appears in any log line, error or printed config.
func TestSecretsNeverShown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	slapd := testsvc.StartSlapdWith(t, testsvc.SlapdOptions{TLS: true})
	pgPassword := secret(t, "PgPw-")
	wrongLDAP := secret(t, "WrongLdapPw-")
	dsn := withPassword(t, testsvc.PostgresDSN(t), pgPassword)
	secrets := map[string]string{"the LDAP bind password": slapd.AdminPassword, "the PostgreSQL password": pgPassword,
		"a wrong LDAP password": wrongLDAP}
	w := &witness{}
	log := w.logger()

	ldapCfg := ldap.Config{URL: slapd.URL, BindDN: slapd.AdminDN, BindPassword: slapd.AdminPassword,
		LiveSync: ldap.LiveSyncAccessLog, Logger: log, TLS: ldap.TLSConfig{StartTLS: true, CAFile: slapd.CAFile},
		Classes: map[connector.ObjectClass]ldap.ClassConfig{
			"person": {BaseDN: slapd.PeopleDN, LDAPObjectClasses: []string{"inetOrgPerson"}, NamingAttribute: "uid"},
		}}
	conn, err := ldap.New(ldapCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	storeOpts := sqlstore.Options{Logger: log}
	store, err := sqlstore.OpenPostgres(ctx, dsn, storeOpts)
	if err != nil {
		t.Fatalf("OpenPostgres: %s", strings.ReplaceAll(err.Error(), pgPassword, "xxxxx"))
	}
	defer store.Close()

	settings := consistency.DefaultSettings()
	engCfg := consistency.Config{Logger: log, Store: store,
		Resources: []consistency.Resource{{ID: "ldap", Connector: conn, Settings: &settings}}}
	eng, err := consistency.New(engCfg)
	if err != nil {
		t.Fatal(err)
	}
	lsCfg := livesync.Config{ResourceID: "ldap", Class: "person", Connector: conn, Store: store, Tokens: store,
		Logger: log, StartFromBeginning: true}
	ls, err := livesync.New(lsCfg)
	if err != nil {
		t.Fatal(err)
	}
	refCfg := refresh.Config{Engine: eng, Logger: log, Owner: "security-test"}
	ref, err := refresh.New(refCfg)
	if err != nil {
		t.Fatal(err)
	}
	propCfg := propagation.Config{Engine: eng, Logger: log, Owner: "security-test"}
	prop, err := propagation.New(propCfg)
	if err != nil {
		t.Fatal(err)
	}

	// The happy path: every component talks to both servers.
	out, err := eng.Add(ctx, consistency.AddRequest{ResourceID: "ldap", Class: "person",
		Attributes: connector.Attributes{"uid": {"alice"}, "cn": {"Alice"}, "sn": {"Liddell"}}})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	w.print("add outcome", out)
	if _, err := eng.Modify(ctx, out.Shadow.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "cn", Values: []string{"Alicia"}}}); err != nil {
		t.Fatalf("Modify: %v", err)
	}
	view, err := eng.Get(ctx, out.Shadow.ID, consistency.GetOptions{})
	w.err("get", err)
	w.print("view", view)
	res, err := ls.Run(ctx)
	w.err("live sync", err)
	w.print("live sync result", res)
	if err != nil || res.Processed == 0 {
		t.Errorf("live sync processed %d changes (%v); the scenario should see the add and the modify", res.Processed, err)
	}
	rres, err := ref.Run(ctx)
	w.err("refresh", err)
	w.print("refresh result", rres)
	pres, err := prop.Run(ctx)
	w.err("propagation", err)
	w.print("propagation result", pres)
	// An add the directory refuses (no sn): a fatal error kept in the
	// shadow and logged.
	_, err = eng.Add(ctx, consistency.AddRequest{ResourceID: "ldap", Class: "person", Attributes: connector.Attributes{"uid": {"bob"}}})
	if err == nil {
		t.Fatal("an add without the required sn succeeded")
	}
	w.err("refused add", err)

	// Failures: a wrong password, a closed port, an untrusted certificate,
	// a bad base DN; each through the connector and through the engine.
	failing := map[string]func(*ldap.Config){
		"wrong password":        func(c *ldap.Config) { c.BindPassword = wrongLDAP },
		"closed port":           func(c *ldap.Config) { c.URL = fmt.Sprintf("ldap://127.0.0.1:%d", closedPort(t)) },
		"unknown host":          func(c *ldap.Config) { c.URL = "ldap://no-such-host.invalid:389" },
		"untrusted certificate": func(c *ldap.Config) { c.URL = slapd.LDAPSURL; c.TLS = ldap.TLSConfig{} },
		"StartTLS untrusted":    func(c *ldap.Config) { c.TLS = ldap.TLSConfig{StartTLS: true} },
		"missing CA file":       func(c *ldap.Config) { c.TLS.CAFile = "/nonexistent/ca.pem" },
		"bad base DN": func(c *ldap.Config) {
			c.Classes = map[connector.ObjectClass]ldap.ClassConfig{"person": {BaseDN: "ou=nowhere,dc=example,dc=com", LDAPObjectClasses: []string{"inetOrgPerson"}, NamingAttribute: "uid"}}
		},
		"password in the URL": func(c *ldap.Config) { c.URL = "ldap://admin:" + slapd.AdminPassword + "@127.0.0.1:1" },
		"bad bind DN":         func(c *ldap.Config) { c.BindDN = "cn=x,,=" },
		"unparsable URL":      func(c *ldap.Config) { c.URL = "ldap://admin:" + slapd.AdminPassword + "@127.0.0.1:x" },
		"URL without host":    func(c *ldap.Config) { c.URL = "ldap://admin:" + slapd.AdminPassword + "@" },
		"wrong scheme":        func(c *ldap.Config) { c.URL = "http://admin:" + slapd.AdminPassword + "@127.0.0.1" },
	}
	for name, mutate := range failing {
		cfg := ldapCfg
		cfg.Classes = ldapCfg.Classes
		mutate(&cfg)
		w.print("ldap config ("+name+")", cfg, &cfg)
		c, err := ldap.New(cfg)
		w.err("ldap.New ("+name+")", err)
		if err != nil {
			continue
		}
		w.print("connector ("+name+")", c)
		terr := c.Test(ctx)
		if terr == nil && name != "bad base DN" {
			t.Errorf("Test (%s) succeeded", name)
		}
		if strings.Contains(name, "untrusted") && (connector.Classify(terr) != connector.CategoryNotSent || !strings.Contains(fmt.Sprint(terr), "certificate")) {
			t.Errorf("Test (%s) = %v; verification is on by default: want a not-sent certificate error", name, terr)
		}
		w.err("Test ("+name+")", terr)
		_, err = c.Add(ctx, "person", connector.Attributes{"uid": {"carol"}, "cn": {"C"}, "sn": {"C"}})
		w.err("Add ("+name+")", err)
		_, err = c.FetchChanges(ctx, "person", "", 10)
		w.err("FetchChanges ("+name+")", err)
		_, err = c.LatestToken(ctx, "person")
		w.err("LatestToken ("+name+")", err)
		e2, err := consistency.New(consistency.Config{Logger: log, Store: store,
			Resources: []consistency.Resource{{ID: "broken-" + name, Connector: c}}})
		if err != nil {
			t.Fatal(err)
		}
		o, err := e2.Add(ctx, consistency.AddRequest{ResourceID: "broken-" + name, Class: "person",
			Attributes: connector.Attributes{"uid": {"dave"}, "cn": {"D"}, "sn": {"D"}}})
		w.err("engine Add ("+name+")", err)
		w.print("engine outcome ("+name+")", o)
		if o.Shadow != nil {
			sh, err := store.Get(ctx, o.Shadow.ID)
			w.err("store Get", err)
			w.print("stored shadow ("+name+")", sh) // pending operations keep the last error text
		}
		c.Close()
	}

	// PostgreSQL: a closed port, a bad DSN, a wrong database, each with the
	// password in the DSN.
	for name, bad := range map[string]string{
		"closed port":   fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/test?sslmode=disable&connect_timeout=5", pgPassword, closedPort(t)),
		"bad port":      fmt.Sprintf("postgres://postgres:%s@127.0.0.1:99999x/test?sslmode=disable", pgPassword),
		"key=value":     fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=test sslmode=disable connect_timeout=5", closedPort(t), pgPassword),
		"bad key=value": fmt.Sprintf("host=127.0.0.1 port=x user=postgres password=%s dbname=test", pgPassword),
		"no database":   withPassword(t, "postgres://postgres@127.0.0.1:5432/no_such_db_umbra?sslmode=disable", pgPassword),
		"bad parameter": withPassword(t, "postgres://postgres@127.0.0.1:5432/test?sslmode=bogus", pgPassword),
		"unknown host":  withPassword(t, "postgres://postgres@no-such-host.invalid:5432/test?sslmode=disable&connect_timeout=5", pgPassword),
		"bad schema":    withPassword(t, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", pgPassword),
	} {
		opts := sqlstore.Options{Logger: log}
		if name == "bad schema" {
			opts.Schema = "Bad-Schema"
		}
		w.print("store options ("+name+")", opts, &opts)
		st, err := sqlstore.OpenPostgres(ctx, bad, opts)
		if err == nil {
			st.Close()
			t.Errorf("OpenPostgres (%s) succeeded", name)
			continue
		}
		w.err("OpenPostgres ("+name+")", err)
	}

	// Every configuration and component, printed every way.
	w.print("ldap.Config", ldapCfg, &ldapCfg)
	w.print("ldap.Connector", conn)
	w.print("sqlstore.Options", storeOpts, &storeOpts)
	w.print("sqlstore.Store", store)
	w.print("consistency.Config", engCfg, &engCfg)
	w.print("consistency.Settings", settings)
	w.print("consistency.Engine", eng)
	w.print("livesync.Config", lsCfg, &lsCfg)
	w.print("livesync.Task", ls)
	w.print("refresh.Config", refCfg, &refCfg)
	w.print("refresh.Task", ref)
	w.print("propagation.Config", propCfg, &propCfg)
	w.print("propagation.Task", prop)
	w.check(t, secrets)
}
