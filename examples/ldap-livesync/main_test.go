package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/ldap"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

const person = connector.ObjectClass("inetOrgPerson")

// directory starts slapd (skipped without it, failed under UMBRA_FULL=1),
// sets the password variable and returns the server, a connector to make
// changes with, and the flags that point the example at it.
func directory(t *testing.T, strategy string) (*testsvc.Slapd, *ldap.Connector, []string) {
	t.Helper()
	s := testsvc.StartSlapd(t)
	t.Setenv(PasswordEnv, s.AdminPassword)
	conn, err := ldap.New(ldap.Config{URL: s.URL, BindDN: s.AdminDN, BindPassword: s.AdminPassword,
		Classes: map[connector.ObjectClass]ldap.ClassConfig{
			person: {BaseDN: s.PeopleDN, LDAPObjectClasses: []string{"inetOrgPerson"}, NamingAttribute: "uid"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	db := filepath.Join(t.TempDir(), "sync.db")
	return s, conn, []string{"-url", s.URL, "-bind-dn", s.AdminDN, "-base-dn", s.PeopleDN, "-strategy", strategy, "-db", db}
}

func runOnce(t *testing.T, args []string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return out.String()
}

func add(t *testing.T, conn *ldap.Connector, uid string) connector.Identifiers {
	t.Helper()
	res, err := conn.Add(t.Context(), person, connector.Attributes{"uid": {uid}, "cn": {uid}, "sn": {uid}})
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// TestAccessLog: the first run takes the token, the second prints the
// changes made since (create, modify, rename, delete, in order, with their
// tokens), and a third resumes from the stored token and prints none.
func TestAccessLog(t *testing.T) {
	s, conn, args := directory(t, "accesslog")
	out := runOnce(t, args)
	if !strings.Contains(out, "first run: took the directory's current position accesslog:") {
		t.Fatalf("first run:\n%s", out)
	}

	alice := add(t, conn, "alice")
	bob := add(t, conn, "bob")
	if _, err := conn.Modify(t.Context(), person, alice, []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"alice@example.com"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Modify(t.Context(), person, bob, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{"robert"}}}); err != nil {
		t.Fatal(err)
	}
	carol := add(t, conn, "carol")
	if _, err := conn.Delete(t.Context(), person, carol); err != nil {
		t.Fatal(err)
	}

	out = runOnce(t, args)
	dn := func(uid string) string { return "uid=" + uid + "," + s.PeopleDN }
	want := []string{
		"resuming after token accesslog:",
		"create           " + dn("alice") + "  token accesslog:",
		"create           " + dn("bob") + "  token accesslog:",
		"modify           " + dn("alice") + "  token accesslog:",
		"modify           " + dn("bob") + " → " + dn("robert") + "  token accesslog:",
		// (the rename may be followed by a modify of the renamed entry)
		"create           " + dn("carol") + "  token accesslog:",
		"delete           " + dn("carol") + "  token accesslog:",
		" changes (create 3, delete 1, modify ",
	}
	at := 0
	for _, w := range want {
		i := strings.Index(out[at:], w)
		if i < 0 {
			t.Fatalf("second run lacks %q (in order):\n%s", w, out)
		}
		at += i + len(w)
	}
	if strings.Contains(out, s.AdminPassword) {
		t.Error("the output shows the password")
	}

	out = runOnce(t, args)
	if !strings.Contains(out, "no changes (token accesslog:") || strings.Contains(out, "token accesslog:0") ||
		strings.Contains(out, "create ") || strings.Contains(out, "delete ") {
		t.Errorf("third run is not empty:\n%s", out)
	}

	// The shadows are in the same SQLite file as the token.
	store, err := sqlstore.OpenSQLite(t.Context(), args[len(args)-1], sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for uid, dead := range map[string]bool{"alice": false, "robert": false, "carol": true} {
		shs, err := store.List(t.Context(), shadow.Query{ResourceID: resourceID, Name: dn(uid)})
		if err != nil || len(shs) != 1 || shs[0].Dead != dead {
			t.Errorf("shadow of %s: %v %v, want one, dead %v", uid, shs, err, dead)
		}
	}
}

// TestModifyTimestampAndInterval: with -interval the example keeps
// running, picks up a change and stops cleanly on cancel; a later start
// resumes from the stored token.
func TestModifyTimestampAndInterval(t *testing.T) {
	_, conn, args := directory(t, "modifyTimestamp")
	if out := runOnce(t, args); !strings.Contains(out, "first run: took the directory's current position modifyTimestamp:") {
		t.Fatalf("first run:\n%s", out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append(args, "-interval", "100ms"), out) }()
	add(t, conn, "dave")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "create-or-modify") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, w := range []string{"resuming after token modifyTimestamp:", "running every 100ms", "uid=dave,", "stopped; token modifyTimestamp:"} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q:\n%s", w, s)
		}
	}
	if again := runOnce(t, args); !strings.Contains(again, "resuming after token modifyTimestamp:") || strings.Contains(again, "first run") {
		t.Errorf("restart does not resume:\n%s", again)
	}
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: ldap-livesync", "-strategy", "-interval", PasswordEnv} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	t.Setenv(PasswordEnv, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-strategy", "changelog"}, `-strategy "changelog"`},
		{[]string{"-interval", "-1s"}, "-interval -1s"},
		{[]string{"stray"}, "unexpected arguments"},
		{[]string{"-bind-dn", "cn=x"}, "needs its password in $" + PasswordEnv},
		{[]string{"-bind-dn", "", "-url", "ldap://127.0.0.1:1"}, "checking the directory"},
	} {
		err := run(t.Context(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
