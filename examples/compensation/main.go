// Command compensation shows all-or-nothing synchronization of one
// managed-object change to three targets with package compensation.
//
// A user "jdoe" is managed by a host (an IdM server, in miniature) and
// synchronized, in order, to a directory (LDAP-like), an HR database and a
// service-desk ticket system. All three are in-memory fakes written for this
// example; nothing connects to a real system. By default the user's title
// changes and the HR database rejects the change: the managed object is put
// back and the directory and the HR database are reverted, so every target
// ends as it began.
//
// The program prints the story and a final table, and exits with status 1
// when the end state is not the one all-or-nothing promises (try
// -fail-revert ldap to see a compensation that itself fails).
//
// Usage:
//
//	go run ./examples/compensation [-action update] [-fail hr] [-fail-revert none] [-logs]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/umbra-idm/umbra/compensation"
	"github.com/umbra-idm/umbra/connector"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "compensation:", err)
		os.Exit(1)
	}
}

const userID = "jdoe"

// The user before and after the change.
var (
	before = connector.Attributes{
		"uid": {"jdoe"}, "cn": {"Jane Doe"}, "title": {"Engineer"},
		"mail": {"jane.doe@example.com"}, "employeeNumber": {"10042"},
	}
	after = connector.Attributes{
		"uid": {"jdoe"}, "cn": {"Jane Doe"}, "title": {"Senior Engineer"},
		"mail": {"jane.doe@example.com"}, "employeeNumber": {"10042"},
	}
)

// run is the program: it parses args, runs one change and checks the end
// state. It returns flag.ErrHelp for -h, and an error when the end state is
// not as expected.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("compensation", flag.ContinueOnError)
	fs.SetOutput(stdout)
	action := fs.String("action", "update", "the change to the managed user: create, update or delete")
	fail := fs.String("fail", "hr", "the target that rejects the change: ldap, hr, tickets, or none")
	failRevert := fs.String("fail-revert", "none", "a target that also rejects the revert (the compensation then fails): ldap, hr, tickets, or none")
	logs := fs.Bool("logs", true, "show the synchronizer's log records")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: compensation [flags]\n\n"+
			"Synchronizes one change of user %q to three in-memory targets (ldap, hr,\n"+
			"tickets) all or nothing, and checks that they end consistent.\n\nFlags:\n", userID)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	change, err := changeFor(*action)
	if err != nil {
		return err
	}

	w := &story{out: stdout}
	world := newWorld(w)
	for _, f := range []struct{ flag, target string }{{"-fail", *fail}, {"-fail-revert", *failRevert}} {
		if f.target != "none" && world.resource(f.target) == nil {
			return fmt.Errorf("%s %q: not a target (want ldap, hr, tickets or none)", f.flag, f.target)
		}
	}
	if r := world.resource(*fail); r != nil {
		r.rejectChange = true
	}
	if r := world.resource(*failRevert); r != nil {
		r.rejectRevert = true
	}

	logger := slog.New(slog.DiscardHandler)
	if *logs {
		logger = slog.New(slog.NewTextHandler(&prefixWriter{prefix: "    slog: ", out: stdout}, &slog.HandlerOptions{
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey && len(groups) == 0 {
					return slog.Attr{} // keep the output stable
				}
				return a
			},
		}))
	}
	var targets []compensation.Target
	for _, r := range world.resources {
		targets = append(targets, compensation.Target{Name: r.name, Sync: r.sync})
	}
	s, err := compensation.New(compensation.Config{Store: world.store, Targets: targets, Logger: logger})
	if err != nil {
		return err
	}

	// The world before the change: the user exists everywhere unless it is
	// about to be created.
	if change.Action != compensation.Create {
		world.seed(before)
	}
	start := world.snapshot()

	w.printf("umbra compensation example: all-or-nothing synchronization of one change\n\n")
	w.printf("Managed user %q before: %s\n", userID, describe(change.Old))
	w.printf("Change: %s %q -> %s\n", change.Action, userID, describe(change.New))
	w.printf("Targets, in order: ldap (directory), hr (HR database), tickets (service desk)\n")
	if *fail != "none" {
		w.printf("Fault: %s rejects the change.\n", *fail)
	}
	if *failRevert != "none" {
		w.printf("Fault: %s also rejects the revert.\n", *failRevert)
	}

	// The host stores the change, then synchronizes it (the onSync point).
	w.printf("\nThe host stores the change in its managed store, then synchronizes it:\n")
	world.store.write(change.ID, change.New)
	w.printf("  host: the managed store now holds %s\n", describe(world.store.get(change.ID)))
	rep, syncErr := s.Sync(ctx, change)

	w.printf("\nResult: ")
	if syncErr != nil {
		w.printf("%v\n", syncErr)
	} else {
		w.printf("every target took the change\n")
	}
	end := world.snapshot()

	// All or nothing: the end state is the start state when any target
	// rejected the change, else every target holds the new value.
	wantUser := change.New
	if *fail != "none" {
		wantUser = change.Old
	}
	want := world.expected(wantUser)
	w.printf("\n")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tBEFORE\tAFTER\tOUTCOME\tAS EXPECTED")
	var wrong []string
	for _, name := range append([]string{"managed"}, s.Targets()...) {
		outcome := "-"
		if res, ok := rep.Target(name); ok {
			outcome = res.Outcome.String()
		}
		ok := end[name] == want[name]
		if !ok {
			wrong = append(wrong, name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, start[name], end[name], outcome, yesNo(ok))
	}
	_ = tw.Flush()
	w.printf("\n")

	if len(wrong) > 0 {
		w.printf("NOT consistent: all-or-nothing was not kept on %s (see the warnings above).\n", strings.Join(wrong, ", "))
		return fmt.Errorf("end state not as expected on %s (out of step by the report: %v)", strings.Join(wrong, ", "), rep.OutOfStep)
	}
	if *fail != "none" {
		w.printf("Every target ends as it began: the failed change was compensated.\n")
	} else {
		w.printf("Every target holds the change.\n")
	}
	return nil
}

func changeFor(action string) (compensation.Change, error) {
	switch action {
	case "create":
		return compensation.Change{Action: compensation.Create, ID: userID, New: after}, nil
	case "update":
		return compensation.Change{Action: compensation.Update, ID: userID, Old: before, New: after}, nil
	case "delete":
		return compensation.Change{Action: compensation.Delete, ID: userID, Old: before}, nil
	}
	return compensation.Change{}, fmt.Errorf("-action %q: want create, update or delete", action)
}

// describe shows the part of a user this story is about.
func describe(u connector.Attributes) string {
	if u == nil {
		return "(no user)"
	}
	return fmt.Sprintf("title %q", u.Get("title"))
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// story writes the narrative. Targets and the store write to it while Sync
// runs; a mutex keeps lines whole.
type story struct {
	mu  sync.Mutex
	out io.Writer
}

func (s *story) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, format, args...)
}

// step tells one call, marking the compensation's calls.
func (s *story) step(ctx context.Context, who, action, object string, err error) {
	phase := "change "
	if compensation.IsCompensation(ctx) {
		phase = "REVERT "
	}
	result := "ok"
	if err != nil {
		result = "FAILED: " + err.Error()
	}
	s.printf("  %s %-8s %-13s %-38s %s\n", phase, who, action, object, result)
}

// prefixWriter prefixes every line written to out (for log records).
type prefixWriter struct {
	prefix string
	out    io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for line := range bytes.Lines(b) {
		if _, err := io.WriteString(p.out, p.prefix+string(line)); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// world is the host and the three in-memory targets.
type world struct {
	story     *story
	store     *managedStore
	resources []*resource
}

func newWorld(s *story) *world {
	return &world{
		story: s,
		store: &managedStore{story: s, users: map[string]connector.Attributes{}},
		resources: []*resource{
			// A directory keeps entries by DN.
			{name: "ldap", story: s, records: map[string]string{},
				key: func(id string) string { return "uid=" + id + ",ou=people,dc=example,dc=com" },
				row: func(u connector.Attributes) string { return "title=" + u.Get("title") }},
			// An HR database keeps rows by employee number.
			{name: "hr", story: s, records: map[string]string{},
				key: func(id string) string { return "employees[" + id + "]" },
				row: func(u connector.Attributes) string { return u.Get("title") }},
			// A service desk: a person does the work a ticket asks for.
			{name: "tickets", story: s, records: map[string]string{}, tickets: 1000,
				key: func(id string) string { return "account " + id },
				row: func(u connector.Attributes) string { return u.Get("title") }},
		},
	}
}

func (w *world) resource(name string) *resource {
	for _, r := range w.resources {
		if r.name == name {
			return r
		}
	}
	return nil
}

// seed puts user u in the store and on every target, quietly.
func (w *world) seed(u connector.Attributes) {
	w.store.users[userID] = u.Clone()
	for _, r := range w.resources {
		r.records[r.key(userID)] = r.row(u)
	}
}

// snapshot describes what each place holds for the user: the managed store
// as "managed", and each target by name.
func (w *world) snapshot() map[string]string {
	out := map[string]string{"managed": show(w.store.get(userID))}
	for _, r := range w.resources {
		out[r.name] = r.show()
	}
	return out
}

// expected is the snapshot every place holds when it agrees with user u.
func (w *world) expected(u connector.Attributes) map[string]string {
	out := map[string]string{"managed": show(u)}
	for _, r := range w.resources {
		out[r.name] = "(none)"
		if u != nil {
			out[r.name] = r.row(u)
		}
	}
	return out
}

func show(u connector.Attributes) string {
	if u == nil {
		return "(none)"
	}
	return u.Get("title")
}

// managedStore is the host's repository of managed users.
type managedStore struct {
	story *story
	mu    sync.Mutex
	users map[string]connector.Attributes
}

func (m *managedStore) write(id string, u connector.Attributes) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u == nil {
		delete(m.users, id)
		return
	}
	m.users[id] = u.Clone()
}

func (m *managedStore) get(id string) connector.Attributes {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.users[id].Clone()
}

// Put writes the old value back during a compensation.
func (m *managedStore) Put(ctx context.Context, id string, u connector.Attributes) error {
	m.write(id, u)
	m.story.printf("  compensation: the managed store puts user %q back (%s)\n", id, describe(u))
	return ctx.Err()
}

// Delete removes a created user during a compensation.
func (m *managedStore) Delete(ctx context.Context, id string) error {
	m.write(id, nil)
	m.story.printf("  compensation: the managed store deletes user %q again\n", id)
	return ctx.Err()
}

// resource is an in-memory target: a record per user, made from the user by
// row and kept under key. It can reject the change or the revert.
type resource struct {
	name    string
	story   *story
	key     func(id string) string
	row     func(u connector.Attributes) string
	tickets int // the last ticket number (the service desk only)

	mu           sync.Mutex
	records      map[string]string
	rejectChange bool
	rejectRevert bool
}

// sync is the target's mapping: it makes the record match the change.
func (r *resource) sync(ctx context.Context, c compensation.Change) error {
	object := r.key(c.ID)
	err := r.apply(ctx, c)
	if r.name == "tickets" && err == nil {
		r.mu.Lock()
		r.tickets++
		object = fmt.Sprintf("%s (REQ-%d done)", object, r.tickets)
		r.mu.Unlock()
	}
	r.story.step(ctx, r.name, c.Action.Notify(), object, err)
	return err
}

func (r *resource) apply(ctx context.Context, c compensation.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	revert := compensation.IsCompensation(ctx)
	if (revert && r.rejectRevert) || (!revert && r.rejectChange) {
		return r.rejection(c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Action == compensation.Delete {
		delete(r.records, r.key(c.ID))
		return nil
	}
	r.records[r.key(c.ID)] = r.row(c.New)
	return nil
}

// rejection is the error each kind of system gives, with its category.
func (r *resource) rejection(c compensation.Change) error {
	op := c.Action.String()
	switch r.name {
	case "ldap":
		return connector.NewError(connector.CategoryPermission, op, errors.New("insufficientAccessRights (50)"))
	case "hr":
		return connector.NewError(connector.CategoryPolicy, op, errors.New("title change needs a manager's approval"))
	default:
		return connector.NewError(connector.CategoryNotSent, op, errors.New("service desk unreachable"))
	}
}

func (r *resource) show() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.records[r.key(userID)]; ok {
		return rec
	}
	return "(none)"
}
