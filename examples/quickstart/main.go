// Command quickstart tells umbra's story in one run, on the embedded
// default: an in-memory resource simulator (memconn) and a SQLite store in a
// temporary directory — no server needed.
//
// Accounts are provisioned; the resource goes down and operations are
// postponed; it comes back and the refresh task retries them; a live-sync
// run picks up changes made on the resource behind umbra's back; a grouped
// resource receives ten changes as one operation; a compensation reverts a
// half-done change. Time moves on a simulated clock, so the retry periods
// pass in an instant. The program checks the stores after every step and
// exits non-zero when any step did not end as the story says.
//
// Usage:
//
//	go run ./examples/quickstart [-db path] [-keep]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/umbra-idm/umbra/compensation"
	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "quickstart:", err)
		}
		os.Exit(1)
	}
}

const (
	account = connector.ObjectClass("account")
	dirID   = "directory"  // an LDAP-like directory, sometimes down
	hrID    = "hr-tickets" // a slow system: changes are grouped
)

// story carries the run's parts and its checks.
type story struct {
	ctx    context.Context
	out    io.Writer
	clock  *connector.FakeClock
	store  *sqlstore.Store
	dir    *memconn.Conn
	hr     *memconn.Conn
	engine *consistency.Engine
	ids    map[string]string // account name → shadow ID
	steps  []stepResult
}

type stepResult struct {
	name, expect, got string
	ok                bool
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dbPath := fs.String("db", "", "SQLite file for the shadow store (default: a file in a new temporary directory)")
	keep := fs.Bool("keep", false, "keep the temporary directory and print its path")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: quickstart [-db path] [-keep]")
		fmt.Fprintln(fs.Output(), "\nTells umbra's story on an in-memory resource and a SQLite store; exits non-zero if any step fails.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dbPath == "" {
		dir, err := os.MkdirTemp("", "umbra-quickstart-")
		if err != nil {
			return err
		}
		if *keep {
			fmt.Fprintln(stdout, "keeping", dir)
		} else {
			defer os.RemoveAll(dir)
		}
		*dbPath = filepath.Join(dir, "shadows.db")
	}

	s := &story{ctx: ctx, out: stdout, ids: map[string]string{}}
	s.clock = connector.NewFakeClock(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	store, err := sqlstore.OpenSQLite(ctx, *dbPath, sqlstore.Options{Clock: s.clock})
	if err != nil {
		return err
	}
	defer store.Close()
	s.store = store
	s.dir = memconn.New(memconn.Options{Clock: s.clock, PreciseTokens: true})
	s.hr = memconn.New(memconn.Options{Clock: s.clock})
	grouped := consistency.DefaultSettings()
	grouped.OperationGroupingInterval = 10 * time.Minute
	s.engine, err = consistency.New(consistency.Config{Store: store, Clock: s.clock, Resources: []consistency.Resource{
		{ID: dirID, Connector: s.dir},
		{ID: hrID, Connector: s.hr, Settings: &grouped},
	}})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "umbra quickstart — shadows in %s, resources simulated in memory, time simulated\n", *dbPath)

	for _, step := range []func() error{s.provision, s.outage, s.recovery, s.liveSync, s.grouping, s.compensate} {
		if err := step(); err != nil {
			return err
		}
	}
	return s.summary()
}

func (s *story) heading(n int, title string) {
	fmt.Fprintf(s.out, "\n%d. %s\n%s\n", n, title, strings.Repeat("─", len(title)+3))
}

func (s *story) check(name, expect, got string, ok bool) {
	s.steps = append(s.steps, stepResult{name, expect, got, ok})
	mark := "ok"
	if !ok {
		mark = "FAILED"
	}
	fmt.Fprintf(s.out, "   check: %s — expected %s, got %s: %s\n", name, expect, got, mark)
}

func (s *story) provision() error {
	s.heading(1, "Provision three accounts to the directory")
	for _, name := range []string{"alice", "bob", "carol"} {
		out, err := s.engine.Add(s.ctx, consistency.AddRequest{ResourceID: dirID, Class: account, Name: name,
			Attributes: connector.Attributes{"uid": {name}, "mail": {name + "@example.com"}}})
		if err != nil {
			return err
		}
		s.ids[name] = out.Shadow.ID
		fmt.Fprintf(s.out, "   add %-6s → %s (uid %s)\n", name, out.Status, out.Shadow.UID)
	}
	s.check("provisioned", "3 accounts", fmt.Sprintf("%d accounts", s.dir.Len(account)), s.dir.Len(account) == 3)
	return nil
}

func (s *story) outage() error {
	s.heading(2, "The directory goes down; operations are postponed, not lost")
	s.dir.Down()
	before := s.dir.Calls(memconn.CallAdd) + s.dir.Calls(memconn.CallModify) + s.dir.Calls(memconn.CallDelete)
	out, err := s.engine.Modify(s.ctx, s.ids["alice"], []connector.AttributeDelta{
		{Op: connector.Replace, Name: "mail", Values: []string{"alice@corp.example.com"}}})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "   modify alice → %s\n", out.Status)
	add, err := s.engine.Add(s.ctx, consistency.AddRequest{ResourceID: dirID, Class: account, Name: "dave",
		Attributes: connector.Attributes{"uid": {"dave"}, "mail": {"dave@example.com"}}})
	if err != nil {
		return err
	}
	s.ids["dave"] = add.Shadow.ID
	fmt.Fprintf(s.out, "   add dave     → %s\n", add.Status)
	del, err := s.engine.Delete(s.ctx, s.ids["carol"])
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "   delete carol → %s\n", del.Status)
	after := s.dir.Calls(memconn.CallAdd) + s.dir.Calls(memconn.CallModify) + s.dir.Calls(memconn.CallDelete)

	pending, err := s.store.List(s.ctx, shadow.Query{ResourceID: dirID, Unfinished: true})
	if err != nil {
		return err
	}
	fmt.Fprintln(s.out, "\n   pending operations in the store:")
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   account\toperation\ttype\tattempts\tnext attempt\tlast error")
	n := 0
	for _, sh := range pending {
		for _, op := range sh.Pending {
			if op.Completed() {
				continue
			}
			n++
			next := "-"
			if !op.NextAttemptAt.IsZero() {
				next = op.NextAttemptAt.Format("15:04")
			}
			fmt.Fprintf(tw, "   %s\t%s\t%s\t%d\t%s\t%s\n", sh.Name, op.Delta.Type, op.Type, op.Attempt, next, trim(op.LastError, 40))
		}
	}
	tw.Flush()
	s.check("postponed", "3 pending operations, no write sent after the first failure", fmt.Sprintf("%d pending, %d writes sent", n, after-before),
		n == 3 && after-before <= 1)
	return nil
}

func (s *story) recovery() error {
	s.heading(3, "The directory comes back; the refresh task retries")
	s.dir.Up()
	s.clock.Advance(31 * time.Minute)
	fmt.Fprintln(s.out, "   (simulated clock: 31 minutes later, past the 30-minute retry period)")
	task, err := refresh.New(refresh.Config{Engine: s.engine, Concurrency: 4, Progress: func(p refresh.Progress) {
		fmt.Fprintf(s.out, "\r   refresh: %d/%d shadows", p.Done, p.Total)
	}})
	if err != nil {
		return err
	}
	res, err := task.Run(s.ctx)
	fmt.Fprintln(s.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "   refresh: examined %d, completed %d, still pending %d\n", res.Total.Examined, res.Total.Completed, res.Total.StillPending)
	alice, _ := s.dir.ObjectByName(account, "alice")
	_, daveOK := s.dir.ObjectByName(account, "dave")
	_, carolOK := s.dir.ObjectByName(account, "carol")
	left, err := s.store.Count(s.ctx, shadow.Query{ResourceID: dirID, Unfinished: true})
	if err != nil {
		return err
	}
	s.check("retried", "alice's mail changed, dave created, carol deleted, nothing pending",
		fmt.Sprintf("mail %s, dave %v, carol %v, %d pending", alice.Attributes.Get("mail"), daveOK, carolOK, left),
		alice.Attributes.Get("mail") == "alice@corp.example.com" && daveOK && !carolOK && left == 0)
	return nil
}

func (s *story) liveSync() error {
	s.heading(4, "Someone changes the directory behind umbra's back; live sync picks it up")
	task, err := livesync.New(livesync.Config{ResourceID: dirID, Class: account, Connector: s.dir, Store: s.store,
		Tokens: s.store, Clock: s.clock, Handler: func(_ context.Context, ev livesync.Event) error {
			fmt.Fprintf(s.out, "   change: %-7s %-6s token %s\n", ev.Change.Type, ev.Change.ID.Name, ev.Change.Token)
			return nil
		}})
	if err != nil {
		return err
	}
	first, err := task.Run(s.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "   first run takes the current token (%s) and replays no history\n", first.TokenAfter)
	erin, err := s.dir.Put(account, connector.Attributes{"uid": {"erin"}, "mail": {"erin@example.com"}})
	if err != nil {
		return err
	}
	bob, _ := s.dir.ObjectByName(account, "bob")
	if _, err := s.dir.ModifyDirect(account, bob.ID.UID, connector.AttributeDelta{Op: connector.Replace, Name: "mail", Values: []string{"robert@example.com"}}); err != nil {
		return err
	}
	dave, _ := s.dir.ObjectByName(account, "dave")
	if err := s.dir.Remove(account, dave.ID.UID); err != nil {
		return err
	}
	res, err := task.Run(s.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "   live sync: fetched %d, processed %d, token %s → %s\n", res.Fetched, res.Processed, res.TokenBefore, res.TokenAfter)
	erinSh, err := shadow.FindLive(s.ctx, s.store, dirID, account, erin)
	if err != nil {
		return err
	}
	bobSh, err := s.store.Get(s.ctx, s.ids["bob"])
	if err != nil {
		return err
	}
	daveSh, err := s.store.Get(s.ctx, s.ids["dave"])
	if err != nil {
		return err
	}
	s.check("live sync", "erin discovered, bob's mail updated, dave dead",
		fmt.Sprintf("erin %v, bob %s, dave dead %v", erinSh != nil, bobSh.Attributes.Get("mail"), daveSh.Dead),
		erinSh != nil && erinSh.Origin == shadow.OriginDiscovered && bobSh.Attributes.Get("mail") == "robert@example.com" && daveSh.Dead)
	return nil
}

func (s *story) grouping() error {
	s.heading(5, "A slow HR system: ten changes become one operation")
	add, err := s.engine.Add(s.ctx, consistency.AddRequest{ResourceID: hrID, Class: account, Name: "frank",
		Attributes: connector.Attributes{"uid": {"frank"}, "title": {"intern"}}})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "   add frank → %s\n", add.Status)
	for i := 1; i <= 9; i++ {
		out, err := s.engine.Modify(s.ctx, add.Shadow.ID, []connector.AttributeDelta{
			{Op: connector.Replace, Name: "title", Values: []string{fmt.Sprintf("engineer level %d", i)}}})
		if err != nil {
			return err
		}
		if i == 9 {
			fmt.Fprintf(s.out, "   9 modifies of frank → %s\n", out.Status)
		}
	}
	view, err := s.engine.Get(s.ctx, add.Shadow.ID, consistency.GetOptions{Future: true, CacheOnly: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "   future view of frank: title %q (nothing sent yet: %d calls)\n", view.Attributes.Get("title"), s.hr.Calls(memconn.CallAdd)+s.hr.Calls(memconn.CallModify))
	s.clock.Advance(11 * time.Minute)
	fmt.Fprintln(s.out, "   (simulated clock: 11 minutes later, past the 10-minute grouping interval)")
	task, err := propagation.New(propagation.Config{Engine: s.engine, ResourceIDs: []string{hrID}})
	if err != nil {
		return err
	}
	res, err := task.Run(s.ctx)
	if err != nil {
		return err
	}
	calls := s.hr.Calls(memconn.CallAdd) + s.hr.Calls(memconn.CallModify)
	obj, _ := s.hr.ObjectByName(account, "frank")
	fmt.Fprintf(s.out, "   propagation: %d operations merged into %d call(s)\n", res.Total.Operations, calls)
	s.check("grouping", "10 operations, 1 call, title \"engineer level 9\"",
		fmt.Sprintf("%d operations, %d call(s), title %q", res.Total.Operations, calls, obj.Attributes.Get("title")),
		res.Total.Operations == 10 && calls == 1 && obj.Attributes.Get("title") == "engineer level 9")
	return nil
}

// managed is the host's store of managed objects, for the compensation
// step: a map in this example.
type managed map[string]connector.Attributes

func (m managed) Put(_ context.Context, id string, obj connector.Attributes) error {
	m[id] = obj.Clone()
	return nil
}

func (m managed) Delete(_ context.Context, id string) error {
	delete(m, id)
	return nil
}

func (s *story) compensate() error {
	s.heading(6, "A change to three targets fails at the second; compensation reverts it")
	old := connector.Attributes{"title": {"engineer"}}
	store := managed{"grace": old.Clone()}
	targets := map[string]connector.Attributes{"directory": old.Clone(), "payroll": old.Clone(), "badge": old.Clone()}
	apply := func(name string, fail bool) compensation.SyncFunc {
		return func(ctx context.Context, c compensation.Change) error {
			if fail && !compensation.IsCompensation(ctx) {
				return connector.NewError(connector.CategoryPolicy, "update", errors.New("payroll refuses titles it does not know"))
			}
			targets[name] = c.New.Clone()
			return nil
		}
	}
	sync, err := compensation.New(compensation.Config{Store: store, Clock: s.clock, Targets: []compensation.Target{
		{Name: "directory", Sync: apply("directory", false)},
		{Name: "payroll", Sync: apply("payroll", true)},
		{Name: "badge", Sync: apply("badge", false)},
	}})
	if err != nil {
		return err
	}
	change := compensation.Change{Action: compensation.Update, ID: "grace", Old: old, New: connector.Attributes{"title": {"wizard"}}}
	store["grace"] = change.New.Clone() // the host stores the change, then synchronizes it
	rep, err := sync.Sync(s.ctx, change)
	fmt.Fprintf(s.out, "   sync: failed at %q, compensated %v\n", rep.FailedTarget, rep.Compensated)
	if err != nil {
		fmt.Fprintf(s.out, "   error: %v\n", err)
	}
	var got []string
	allOld := store["grace"].Equal(old)
	names := []string{"directory", "payroll", "badge"}
	for _, n := range names {
		got = append(got, n+"="+targets[n].Get("title"))
		allOld = allOld && targets[n].Equal(old)
	}
	sort.Strings(got)
	s.check("compensation", "every target and the managed object back to \"engineer\"",
		fmt.Sprintf("managed=%s %s", store["grace"].Get("title"), strings.Join(got, " ")), err != nil && allOld)
	return nil
}

func (s *story) summary() error {
	fmt.Fprintln(s.out, "\nSummary")
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "step\tresult\texpected")
	failed := 0
	for _, st := range s.steps {
		res := "ok"
		if !st.ok {
			res, failed = "FAILED", failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", st.name, res, st.expect)
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("%d of %d steps did not end as the story says", failed, len(s.steps))
	}
	fmt.Fprintf(s.out, "\nall %d steps ended as the story says\n", len(s.steps))
	return nil
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
