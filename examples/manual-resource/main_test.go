package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/manual"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// cmd runs one invocation and returns its output, failing the test on an
// error.
func cmd(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("run %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func tickets(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "T*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// hrShadow reads the one HR shadow back from the SQLite file.
func hrShadow(t *testing.T, db string) *shadow.Shadow {
	t.Helper()
	store, err := sqlstore.OpenSQLite(t.Context(), db, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	shadows, err := store.List(t.Context(), shadow.Query{ResourceID: hrID})
	if err != nil {
		t.Fatal(err)
	}
	if len(shadows) != 1 {
		t.Fatalf("want 1 HR shadow, got %d", len(shadows))
	}
	return shadows[0]
}

// TestThreeCommands is the example's story: run writes one ticket for the
// add and its changes; refresh leaves the operations in progress while the
// ticket is open; done closes it; refresh completes every operation.
func TestThreeCommands(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tickets")
	out := cmd(t, "run", "-tickets", dir, "-changes", "6")
	files := tickets(t, dir)
	if len(files) != 1 {
		t.Fatalf("want one ticket file, got %v\n%s", files, out)
	}
	for _, want := range []string{
		"add jdoe                          → queued",
		"modify department := Engineering  → queued",
		"0 operations executed, 0 tickets",
		"7 operations merged into 1 ticket(s)",
		"ticket T000000001 written: " + files[0],
		"done -tickets " + dir + " T000000001",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
	sink, err := manual.NewFileSink(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := sink.Status(t.Context(), "T000000001")
	if err != nil {
		t.Fatal(err)
	}
	// The ticket carries the merged result: the add with the last values.
	want := connector.Attributes{"uid": {"jdoe"}, "cn": {"jdoe"}, "title": {"Engineer"}, "department": {"Engineering"},
		"mail": {"jdoe1@example.com", "jdoe2@example.com"}}
	if tk.Operation != manual.OpAdd || tk.Status != manual.StatusOpen || !tk.Attributes.Equal(want) {
		t.Errorf("ticket = %s %s %v, want an open add of %v", tk.Operation, tk.Status, tk.Attributes, want)
	}

	db := filepath.Join(dir, "umbra.db")
	out = cmd(t, "refresh", "-tickets", dir)
	if !strings.Contains(out, "0 operations completed, 0 failed, 7 still pending") || !strings.Contains(out, "Some tickets are still open") {
		t.Errorf("refresh before done:\n%s", out)
	}
	if sh := hrShadow(t, db); sh.Exists || !sh.Unfinished() {
		t.Errorf("before done: shadow exists %v, unfinished %v", sh.Exists, sh.Unfinished())
	}

	out = cmd(t, "done", files[0])
	if !strings.Contains(out, "ticket T000000001 in "+dir+" marked done") {
		t.Errorf("done output:\n%s", out)
	}
	out = cmd(t, "refresh", "-tickets", dir)
	if !strings.Contains(out, "7 operations completed, 0 failed, 0 still pending") {
		t.Errorf("refresh after done:\n%s", out)
	}
	after := out[strings.Index(out, "after refresh:"):]
	if n := strings.Count(after, "completed  success  T000000001"); n != 7 {
		t.Errorf("after refresh lists %d completed operations, want 7:\n%s", n, out)
	}
	sh := hrShadow(t, db)
	if !sh.Exists || sh.Unfinished() || sh.UID != tk.UID || len(sh.Pending) != 7 {
		t.Fatalf("after done: exists %v unfinished %v uid %q (ticket %q), %d operations", sh.Exists, sh.Unfinished(), sh.UID, tk.UID, len(sh.Pending))
	}
	for _, op := range sh.Pending {
		if op.Status != shadow.StatusCompleted || op.Result != shadow.ResultSuccess {
			t.Errorf("operation %d: %s %s", op.ID, op.Status, op.Result)
		}
	}
	if len(tickets(t, dir)) != 1 {
		t.Errorf("refresh wrote tickets: %v", tickets(t, dir))
	}
}

// TestDoneByReferenceAndTwice: done takes the bare reference with -tickets,
// and refuses a ticket already closed or unknown.
func TestDoneByReferenceAndTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(t.TempDir(), "elsewhere.db")
	cmd(t, "-tickets", dir, "-db", db, "-name", "asmith", "-changes", "1")
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("-db not used: %v", err)
	}
	out := cmd(t, "done", "-tickets", dir, "-db", db, "T000000001")
	if !strings.Contains(out, "refresh -tickets "+dir+" -db "+db) {
		t.Errorf("done does not pass the flags on:\n%s", out)
	}
	nowhere := filepath.Join(t.TempDir(), "nowhere")
	for _, ref := range []string{"T000000001", "T000000002", "passwd", filepath.Join(nowhere, "T000000001.json")} {
		err := run(t.Context(), []string{"done", "-tickets", dir, ref}, &bytes.Buffer{})
		if err == nil {
			t.Errorf("done %s: no error", ref)
		}
	}
	if _, err := os.Stat(nowhere); err == nil {
		t.Errorf("done of a path in a missing folder created %s", nowhere)
	}
	if err := run(t.Context(), []string{"run", "-tickets", dir, "-db", db, "-name", "asmith"}, &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), `account "asmith" is already provisioned`) {
		t.Errorf("second run of one account = %v", err)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: manual-resource", "done REF", "-tickets", "-interval"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"done", "-tickets", dir}, "want one ticket"},
		{[]string{"run", "-tickets", dir, "stray"}, "unexpected arguments"},
		{[]string{"run", "-tickets", dir, "-changes", "0"}, "-changes 0"},
		{[]string{"refresh", "-tickets", filepath.Join(dir, "none")}, "no shadow store"},
		{[]string{"-nope"}, "flag provided but not defined"},
	} {
		err := run(t.Context(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
