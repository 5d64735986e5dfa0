// Command manual-resource shows a resource where a person does the work:
// operation grouping, propagation and the manual connector together.
//
// An HR system without an API is the resource. Every write to it becomes a
// ticket, a JSON file in a folder, that a person works and closes. With
// operation grouping on, the changes made to one account within the grouping
// interval are queued; propagation merges them and writes ONE ticket. The
// ticket's operation stays in progress in the account's shadow until the
// person marks the ticket done; the refresh task then reads the ticket and
// completes the operation.
//
// The three commands share a folder (-tickets) holding the tickets and the
// SQLite shadow store, so the story spans three invocations, as it would in
// real life:
//
//	go run ./examples/manual-resource run                  # changes → one ticket
//	go run ./examples/manual-resource done T000000001      # the person's part
//	go run ./examples/manual-resource refresh              # shadow completes
//
// Usage:
//
//	manual-resource [run|done|refresh] [-tickets dir] [-db file] [flags] [ticket]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/manual"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "manual-resource:", err)
		}
		os.Exit(1)
	}
}

const (
	hrID    = "hr"
	account = connector.ObjectClass("account")
	prog    = "manual-resource"
)

// defaultTickets is the folder used when -tickets is not given: the same
// one for every invocation, so that the three commands find each other's
// state without flags.
func defaultTickets() string { return filepath.Join(os.TempDir(), "umbra-manual-resource") }

// options are the flags every command shares.
type options struct {
	tickets  string
	db       string
	interval time.Duration
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(prog+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(stdout)
	var o options
	fs.StringVar(&o.tickets, "tickets", defaultTickets(), "folder of the ticket files (and, by default, of the store)")
	fs.StringVar(&o.db, "db", "", "SQLite file of the shadow store (default: umbra.db in the -tickets folder)")
	fs.DurationVar(&o.interval, "interval", 10*time.Minute, "operation grouping interval of the HR resource")
	name := fs.String("name", "jdoe", "run: the account to provision")
	changes := fs.Int("changes", 4, "run: how many modifications follow the add")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s [command] [flags] [ticket]\n\n", prog)
		fmt.Fprintln(out, "Commands (they share the -tickets folder and the store in it):")
		fmt.Fprintln(out, "  run       provision an account on the manual HR resource with grouping on, change it")
		fmt.Fprintln(out, "            several times, propagate: one ticket file (the default command)")
		fmt.Fprintln(out, "  done REF  mark ticket REF (T000000001, or the ticket file's path) done, as the person would")
		fmt.Fprintln(out, "  refresh   run the refresh task: operations whose tickets are closed complete")
		fmt.Fprintln(out, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch cmd {
	case "run":
		o.defaultDB()
		if fs.NArg() > 0 {
			return fmt.Errorf("run: unexpected arguments %q", fs.Args())
		}
		if *changes < 1 {
			return fmt.Errorf("-changes %d: must be at least 1", *changes)
		}
		return provision(ctx, o, *name, *changes, stdout)
	case "done":
		if fs.NArg() != 1 {
			return fmt.Errorf("done: want one ticket reference or path, got %q", fs.Args())
		}
		return markDone(o, fs.Arg(0), stdout)
	case "refresh":
		if fs.NArg() > 0 {
			return fmt.Errorf("refresh: unexpected arguments %q", fs.Args())
		}
		o.defaultDB()
		return refreshShadows(ctx, o, stdout)
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q (want run, done or refresh)", cmd)
	}
}

// defaultDB sets the store's file when -db was not given.
func (o *options) defaultDB() {
	if o.db == "" {
		o.db = filepath.Join(o.tickets, "umbra.db")
	}
}

// world is the store, the manual connector and the engine of one
// invocation.
type world struct {
	store  *sqlstore.Store
	sink   *manual.FileSink
	engine *consistency.Engine
}

func open(ctx context.Context, o options) (*world, error) {
	sink, err := manual.NewFileSink(o.tickets, nil)
	if err != nil {
		return nil, err
	}
	conn, err := manual.New(manual.Options{Sink: sink})
	if err != nil {
		return nil, err
	}
	store, err := sqlstore.OpenSQLite(ctx, o.db, sqlstore.Options{})
	if err != nil {
		return nil, err
	}
	settings := consistency.DefaultSettings()
	settings.OperationGroupingInterval = o.interval
	engine, err := consistency.New(consistency.Config{Store: store, Resources: []consistency.Resource{
		{ID: hrID, Connector: conn, Settings: &settings},
	}})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &world{store: store, sink: sink, engine: engine}, nil
}

func provision(ctx context.Context, o options, name string, changes int, out io.Writer) error {
	w, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer w.store.Close()
	if n, err := w.store.Count(ctx, shadow.Query{ResourceID: hrID, Class: account, Name: name}); err != nil {
		return err
	} else if n > 0 {
		return fmt.Errorf("account %q is already provisioned in %s: pick another -name, or a new -tickets folder", name, o.db)
	}
	fmt.Fprintf(out, "tickets folder: %s\nshadow store:   %s\n", o.tickets, o.db)
	fmt.Fprintf(out, "HR is a manual resource with grouping: changes wait %s, then go out merged as one ticket\n\n", o.interval)

	add, err := w.engine.Add(ctx, consistency.AddRequest{ResourceID: hrID, Class: account, Name: name,
		Attributes: connector.Attributes{"uid": {name}, "cn": {name}, "title": {"Intern"}, "department": {"Sales"}}})
	if err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	fmt.Fprintf(out, "%-33s → %s\n", "add "+name, add.Status)
	titles := []string{"Associate", "Engineer", "Senior Engineer", "Staff Engineer", "Principal Engineer"}
	for i := 0; i < changes; i++ {
		var d []connector.AttributeDelta
		var what string
		switch i % 3 {
		case 0:
			title := titles[min(i/3, len(titles)-1)]
			d = []connector.AttributeDelta{{Op: connector.Replace, Name: "title", Values: []string{title}}}
			what = "title := " + title
		case 1:
			mail := fmt.Sprintf("%s%d@example.com", name, i/3+1)
			d = []connector.AttributeDelta{{Op: connector.AddValues, Name: "mail", Values: []string{mail}}}
			what = "mail += " + mail
		default:
			d = []connector.AttributeDelta{{Op: connector.Replace, Name: "department", Values: []string{"Engineering"}}}
			what = "department := Engineering"
		}
		mod, err := w.engine.Modify(ctx, add.Shadow.ID, d)
		if err != nil {
			return fmt.Errorf("modify %s: %w", name, err)
		}
		fmt.Fprintf(out, "%-33s → %s\n", "modify "+what, mod.Status)
	}
	if err := printPending(ctx, w.store, out, "\npending operations of the shadow:"); err != nil {
		return err
	}

	due, err := propagate(ctx, w.engine, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\npropagation (interval %s not over): %d operations executed, %d tickets\n", o.interval, due.Total.Operations, due.Total.Calls)
	res, err := propagate(ctx, w.engine, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "propagation -force (an operator's flush now): %d operations merged into %d ticket(s)\n", res.Total.Operations, res.Total.Calls)
	if res.Total.Calls != 1 {
		return fmt.Errorf("propagation made %d tickets, want 1 (%v)", res.Total.Calls, res.Err())
	}

	sh, err := w.store.Get(ctx, add.Shadow.ID)
	if err != nil {
		return err
	}
	ref := ""
	for _, op := range sh.Pending {
		if op.Type == shadow.OpAsync && !op.Completed() {
			ref = op.AsyncRef
		}
	}
	t, err := w.sink.Status(ctx, ref)
	if err != nil {
		return fmt.Errorf("the shadow's operation names ticket %q: %w", ref, err)
	}
	path := filepath.Join(o.tickets, ref+".json")
	fmt.Fprintf(out, "\nticket %s written: %s\n", ref, path)
	fmt.Fprintf(out, "  %s %s %s, status %s\n", t.Operation, t.Class, t.Name, t.Status)
	for _, a := range slices.Sorted(maps.Keys(t.Attributes)) {
		fmt.Fprintf(out, "    %-10s %s\n", a, strings.Join(t.Attributes[a], ", "))
	}
	if err := printPending(ctx, w.store, out, "\npending operations of the shadow:"); err != nil {
		return err
	}
	flags := flagsFor(o)
	fmt.Fprintf(out, "\nNext: a person creates the account and closes the ticket; either edit \"status\" to \"done\" in the file, or\n")
	fmt.Fprintf(out, "  go run ./examples/manual-resource done%s %s\n", flags, ref)
	fmt.Fprintf(out, "then complete the shadow's operations with\n  go run ./examples/manual-resource refresh%s\n", flags)
	return nil
}

func propagate(ctx context.Context, e *consistency.Engine, force bool) (propagation.Result, error) {
	task, err := propagation.New(propagation.Config{Engine: e, ResourceIDs: []string{hrID}, Force: force})
	if err != nil {
		return propagation.Result{}, err
	}
	res, err := task.Run(ctx)
	if err != nil {
		return res, fmt.Errorf("propagation: %w", err)
	}
	return res, nil
}

// flagsFor returns the flags the next commands need to find this state.
func flagsFor(o options) string {
	s := ""
	if o.tickets != defaultTickets() {
		s += " -tickets " + o.tickets
	}
	if o.db != filepath.Join(o.tickets, "umbra.db") {
		s += " -db " + o.db
	}
	return s
}

func markDone(o options, arg string, out io.Writer) error {
	dir, ref := o.tickets, arg
	if strings.HasSuffix(arg, ".json") || strings.ContainsRune(arg, filepath.Separator) {
		dir, ref = filepath.Dir(arg), strings.TrimSuffix(filepath.Base(arg), ".json")
	}
	// Check the file first: MarkDone would create a missing folder.
	if _, err := os.Stat(filepath.Join(dir, ref+".json")); err != nil {
		return fmt.Errorf("done %s: no such ticket: %w", arg, err)
	}
	if err := manual.MarkDone(dir, ref); err != nil {
		return fmt.Errorf("done %s: %w", arg, err)
	}
	fmt.Fprintf(out, "ticket %s in %s marked done\n", ref, dir)
	o.tickets = dir
	o.defaultDB()
	fmt.Fprintf(out, "Next: go run ./examples/manual-resource refresh%s\n", flagsFor(o))
	return nil
}

func refreshShadows(ctx context.Context, o options, out io.Writer) error {
	if _, err := os.Stat(o.db); err != nil {
		return fmt.Errorf("no shadow store at %s (run the run command first, with the same -tickets): %w", o.db, err)
	}
	w, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer w.store.Close()
	if err := printPending(ctx, w.store, out, "before refresh:"); err != nil {
		return err
	}
	// Unfinished: every shadow with an unfinished operation, so the
	// tickets are read now rather than when their poll falls due.
	task, err := refresh.New(refresh.Config{Engine: w.engine, Selection: refresh.Selection{Mode: refresh.Unfinished}})
	if err != nil {
		return err
	}
	res, err := task.Run(ctx)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	if res.ErrorCount > 0 {
		return fmt.Errorf("refresh: %w", res.Err())
	}
	fmt.Fprintf(out, "\nrefresh: %d shadows examined, %d tickets read, %d operations completed, %d failed, %d still pending\n\n",
		res.Total.Examined, res.Total.AsyncChecked, res.Total.Completed, res.Total.Failed, res.Total.StillPending)
	if err := printPending(ctx, w.store, out, "after refresh:"); err != nil {
		return err
	}
	if res.Total.StillPending > 0 {
		fmt.Fprintf(out, "\nSome tickets are still open: mark them done (go run ./examples/manual-resource done%s REF) and refresh again.\n", flagsFor(o))
	}
	return nil
}

// printPending prints every pending operation of the HR shadows, finished
// ones included (they stay for the retention period).
func printPending(ctx context.Context, store shadow.Store, out io.Writer, title string) error {
	shadows, err := store.List(ctx, shadow.Query{ResourceID: hrID})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, title)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  account\tstate\top\toperation\ttype\tstatus\tresult\tticket")
	for _, sh := range shadows {
		for _, op := range sh.Pending {
			ref := op.AsyncRef
			if ref == "" {
				ref = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", sh.Name, sh.State(), op.ID, op.Delta.Type, op.Type, op.Status, op.Result, ref)
		}
	}
	return tw.Flush()
}
