package crash_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
)

// envChild carries a child's configuration (JSON) when a crash test starts
// this binary again as a child.
const envChild = "UMBRA_CRASH_CHILD"

// childConfig is what a child process runs.
type childConfig struct {
	Task    string
	Backend backend
	// Child numbers the child (its clock; see childTime).
	Child int
	// SelfKill, when > 0, kills the child right after its SelfKill-th
	// write of kind SelfKillOp (any kind when empty) reached the resource.
	SelfKill   int64
	SelfKillOp string
}

// childLoops caps a child's runs: one that is not done by then fails.
const childLoops = 90

// TestMain runs a crash child when a crash test started this binary for
// one, and the tests otherwise.
func TestMain(m *testing.M) {
	if env := os.Getenv(envChild); env != "" {
		var cfg childConfig
		if err := json.Unmarshal([]byte(env), &cfg); err != nil {
			fmt.Fprintln(os.Stderr, "crash child: bad config:", err)
			os.Exit(2)
		}
		if err := runChild(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs the task in a loop, the clock an hour further each time,
// until no shadow has unfinished work. It prints "started" once the store
// and the resource are open and "done" at quiescence.
func runChild(cfg childConfig) error {
	ctx := context.Background()
	clk := connector.NewFakeClock(childTime(cfg.Child, 0))
	st, err := cfg.Backend.openStore(ctx, clk)
	if err != nil {
		return err
	}
	defer st.Close()
	db, err := cfg.Backend.openResource(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := newConnector(ctx, db, cfg.Backend.dialect())
	if err != nil {
		return err
	}
	journal, err := os.OpenFile(filepath.Join(cfg.Backend.Dir, "journal"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer journal.Close()
	j := &journaled{c: conn, journal: journal, selfKill: cfg.SelfKill, killOp: cfg.SelfKillOp}
	s := settings(cfg.Task)
	eng, err := consistency.New(consistency.Config{Clock: clk, Store: st,
		Resources: []consistency.Resource{{ID: resID, Connector: j, Settings: &s}}})
	if err != nil {
		return err
	}
	ref, err := refresh.New(refresh.Config{Engine: eng, Concurrency: 4})
	if err != nil {
		return err
	}
	var prop *propagation.Task
	if cfg.Task == taskPropagation {
		if prop, err = propagation.New(propagation.Config{Engine: eng, Concurrency: 4}); err != nil {
			return err
		}
	}
	fmt.Println("started")
	for loop := 0; loop < childLoops; loop++ {
		clk.Set(childTime(cfg.Child, loop))
		if prop != nil {
			res, err := prop.Run(ctx)
			if err != nil {
				return fmt.Errorf("propagation run: %w", err)
			}
			report("propagation", res.Err())
		}
		res, err := ref.Run(ctx)
		if err != nil {
			return fmt.Errorf("refresh run: %w", err)
		}
		report("refresh", res.Err())
		n, err := st.Count(ctx, shadow.Query{ResourceID: resID, Unfinished: true})
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Println("done")
			return nil
		}
	}
	return errors.New("work left after every loop")
}

// report writes the failures of one run to stderr; the parent shows them
// when the child fails.
func report(what string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	}
}
