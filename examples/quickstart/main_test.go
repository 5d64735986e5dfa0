package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun runs the whole story and checks that every step ended as told;
// the program's own checks read the stores, so a regression in any engine
// fails here.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-db", filepath.Join(t.TempDir(), "s.db")}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"all 6 steps ended as the story says", "10 operations merged into 1 call", "change: create  erin"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(out.String(), "Usage: quickstart") {
		t.Errorf("help text:\n%s", out.String())
	}
}
