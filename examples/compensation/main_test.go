package main

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
)

// tableRow matches one row of the final table: place, before, after,
// outcome, as expected.
var tableRow = regexp.MustCompile(`(?m)^(managed|ldap|hr|tickets)\s+(\S+(?: \S+)?)\s{2,}(\S+(?: \S+)?)\s{2,}(-|applied|failed|reverted|revert failed|not attempted)\s{2,}(yes|NO)$`)

// rows returns the table's rows by place: [before, after, outcome, ok].
func rows(t *testing.T, out string) map[string][4]string {
	t.Helper()
	got := map[string][4]string{}
	for _, m := range tableRow.FindAllStringSubmatch(out, -1) {
		got[m[1]] = [4]string{m[2], m[3], m[4], m[5]}
	}
	if len(got) != 4 {
		t.Fatalf("want 4 table rows, found %v in:\n%s", got, out)
	}
	return got
}

// TestDefaultRun is the scenario: an update, the second target
// (hr) fails, every target ends as it began.
func TestDefaultRun(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(t.Context(), nil, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"change  ldap     notifyUpdate",
		"change  hr       notifyUpdate  employees[jdoe]                        FAILED: update: policy:",
		`the managed store puts user "jdoe" back (title "Engineer")`,
		"REVERT  hr       notifyUpdate",
		"REVERT  ldap     notifyUpdate",
		"action=notifyUpdate target=hr",
		"change reverted; no target out of step",
		"Every target ends as it began",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// The revert runs in reverse order, after the store was put back, and
	// tickets is never called.
	if i, j, k := strings.Index(s, "puts user"), strings.Index(s, "REVERT  hr"), strings.Index(s, "REVERT  ldap"); !(i < j && j < k) {
		t.Errorf("compensation out of order:\n%s", s)
	}
	if strings.Contains(s, "tickets  notify") {
		t.Errorf("tickets was called:\n%s", s)
	}
	got := rows(t, s)
	want := map[string][4]string{
		"managed": {"Engineer", "Engineer", "-", "yes"},
		"ldap":    {"title=Engineer", "title=Engineer", "reverted", "yes"},
		"hr":      {"Engineer", "Engineer", "reverted", "yes"},
		"tickets": {"Engineer", "Engineer", "not attempted", "yes"},
	}
	for place, w := range want {
		if got[place] != w {
			t.Errorf("%s row = %v, want %v", place, got[place], w)
		}
	}
}

// TestEveryActionAndFailure: every action with each target failing ends
// where it began; with no failure, everywhere holds the change.
func TestEveryActionAndFailure(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"create", "update", "delete"} {
		for _, fail := range []string{"ldap", "hr", "tickets", "none"} {
			t.Run(action+"/"+fail, func(t *testing.T) {
				t.Parallel()
				var out bytes.Buffer
				if err := run(t.Context(), []string{"-action", action, "-fail", fail, "-logs=false"}, &out); err != nil {
					t.Fatalf("run: %v\n%s", err, out.String())
				}
				for place, r := range rows(t, out.String()) {
					if r[3] != "yes" {
						t.Errorf("%s not as expected: %v", place, r)
					}
					if fail != "none" && r[0] != r[1] {
						t.Errorf("%s changed from %s to %s", place, r[0], r[1])
					}
				}
				if strings.Contains(out.String(), "slog:") {
					t.Error("-logs=false still logs")
				}
			})
		}
	}
}

// TestFailedCompensationExitsNonZero: when the revert fails too, the end
// state is not as promised and run says so.
func TestFailedCompensationExitsNonZero(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(t.Context(), []string{"-fail-revert", "ldap"}, &out)
	if err == nil || !strings.Contains(err.Error(), "not as expected on ldap") {
		t.Fatalf("run = %v, want an error naming ldap\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		`msg="compensation: revert failed; not compensated again" action=notifyUpdate target=ldap`,
		"targets out of step: ldap",
		"NOT consistent",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if r := rows(t, s)["ldap"]; r != [4]string{"title=Engineer", "title=Senior Engineer", "revert failed", "NO"} {
		t.Errorf("ldap row = %v", r)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: compensation", "-action", "-fail-revert"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-action", "rename"}, `-action "rename"`},
		{[]string{"-fail", "crm"}, `-fail "crm"`},
		{[]string{"-fail-revert", "crm"}, `-fail-revert "crm"`},
		{[]string{"stray"}, "unexpected arguments"},
		{[]string{"-nope"}, "flag provided but not defined"},
	} {
		err := run(t.Context(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
