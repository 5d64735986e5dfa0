// Package manual is a connector for resources where a person does the work:
// an application without an API, a badge system, a mainframe account made
// by an administrator. Every write becomes a ticket in a TicketSink (a
// folder of JSON files, FileSink, or the host's help desk) and returns at
// once with the ticket's reference as an asynchronous operation
// (connector.Result.Async). The person closes the ticket as done or
// rejected; the consistency engine's refresh asks OperationStatus, which
// reads the ticket:
//
//   - open: in progress;
//   - done: done, with the account's identifiers (the connector assigns the
//     UID when it makes an add ticket; the Name is the value of the naming
//     attribute);
//   - rejected: failed, with an error carrying the person's reason, of
//     category connector.CategoryPolicy unless the person gave another
//     cause (Ticket.Cause: "not found", "already exists", "schema",
//     "permission").
//
// The engine asks about an open ticket when its operations fall due for a
// status check: every OperationRetryPeriod of the resource, in the refresh
// task's runs. Set that period to how soon a closed ticket should be
// noticed.
//
// Reads (Get, Search) answer from what the tickets marked done set, applied
// in the order the tickets were made: the connector knows the accounts it
// asked for and a person confirmed, nothing else. Every read and every add
// reads all tickets of the sink, which suits the pace of people, not of
// machines.
//
// Together with operation grouping on the resource
// (consistency.Settings.OperationGroupingInterval) and the propagation task,
// ten changes to one account within the interval become one ticket.
package manual

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/clock"
)

// DefaultNamingAttribute is the naming attribute when Options leaves it
// empty.
const DefaultNamingAttribute = "uid"

// Options configure a Conn.
type Options struct {
	// Clock stamps tickets' CreatedAt. Default: the wall clock.
	Clock connector.Clock
	// NamingAttribute is the attribute whose value is an account's Name;
	// an add without it fails with CategorySchema. Default
	// DefaultNamingAttribute ("uid").
	NamingAttribute string
	// NewUID returns the UID of a new account, called once per add ticket.
	// It MUST NOT repeat. Default: "m-" and 16 random hex digits.
	NewUID func() string
	// Sink keeps the tickets. Required.
	Sink TicketSink
}

// Conn is the manual connector. It implements connector.Connector,
// connector.Searcher and connector.AsyncOperator, and is safe for concurrent
// use (as far as its sink is).
type Conn struct {
	sink   TicketSink
	clock  clock.Clock
	naming string
	newUID func() string
}

var (
	_ connector.Connector     = (*Conn)(nil)
	_ connector.Searcher      = (*Conn)(nil)
	_ connector.AsyncOperator = (*Conn)(nil)
)

// New returns a manual connector. It fails when opts.Sink is nil.
func New(opts Options) (*Conn, error) {
	if opts.Sink == nil {
		return nil, errors.New("manual: invalid options: Sink is nil")
	}
	c := &Conn{sink: opts.Sink, clock: clock.Or(opts.Clock), naming: opts.NamingAttribute, newUID: opts.NewUID}
	if c.naming == "" {
		c.naming = DefaultNamingAttribute
	}
	if c.newUID == nil {
		c.newUID = randomUID
	}
	return c, nil
}

func randomUID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "m-" + hex.EncodeToString(b[:])
}

// Add makes an add ticket for a new account and returns its identifiers
// (UID assigned now, Name from the naming attribute) with the ticket's
// reference as Result.Async. It fails with CategorySchema when the naming
// attribute is missing, and with CategoryAlreadyExists when a done ticket
// already made a live account of that Name.
func (c *Conn) Add(ctx context.Context, class connector.ObjectClass, attrs connector.Attributes) (connector.Result, error) {
	if class == "" {
		return connector.Result{}, connector.NewError(connector.CategorySchema, "add", errors.New("empty object class"))
	}
	name := attrs.Get(c.naming)
	if name == "" {
		return connector.Result{}, connector.NewError(connector.CategorySchema, "add",
			fmt.Errorf("naming attribute %q has no value", c.naming))
	}
	if err := checkNames("add", attrs.Names()); err != nil {
		return connector.Result{}, err
	}
	st, err := c.state(ctx)
	if err != nil {
		return connector.Result{}, connector.Wrap("add", err)
	}
	if o := st.find(class, connector.Identifiers{Name: name}); o != nil {
		existing := o.ID
		return connector.Result{}, &connector.Error{Category: connector.CategoryAlreadyExists, Op: "add",
			Existing: &existing, Err: fmt.Errorf("account %q of class %q exists (made by a done ticket)", name, class)}
	}
	id := connector.Identifiers{UID: c.newUID(), Name: name}
	t := Ticket{Operation: OpAdd, Class: class, UID: id.UID, Name: id.Name, Attributes: attrs.Normalize()}
	return c.create(ctx, "add", t, id)
}

// Modify makes a modify ticket for account id with the changes, in order.
// When the changes replace the naming attribute, the ticket says so
// (NewName) and Result.ID carries the new Name. The account's existence is
// the person's to judge: a modify of an account they cannot find is
// rejected on the ticket.
func (c *Conn) Modify(ctx context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
	if err := checkTarget("modify", class, id); err != nil {
		return connector.Result{}, err
	}
	d := connector.Delta{Type: connector.DeltaModify, Changes: changes}
	if err := d.Validate(); err != nil {
		return connector.Result{}, connector.NewError(connector.CategorySchema, "modify", err)
	}
	names := make([]string, len(changes))
	for i, ch := range changes {
		names[i] = ch.Name
	}
	if err := checkNames("modify", names); err != nil {
		return connector.Result{}, err
	}
	t := Ticket{Operation: OpModify, Class: class, UID: id.UID, Name: id.Name, Changes: toChanges(changes)}
	out := id
	if newName, ok := c.rename(changes); ok {
		if newName == "" {
			return connector.Result{}, connector.NewError(connector.CategorySchema, "modify",
				fmt.Errorf("the changes leave naming attribute %q without a value", c.naming))
		}
		if newName != id.Name {
			t.NewName, out.Name = newName, newName
		}
	}
	return c.create(ctx, "modify", t, out)
}

// Delete makes a delete ticket for account id.
func (c *Conn) Delete(ctx context.Context, class connector.ObjectClass, id connector.Identifiers) (connector.Result, error) {
	if err := checkTarget("delete", class, id); err != nil {
		return connector.Result{}, err
	}
	t := Ticket{Operation: OpDelete, Class: class, UID: id.UID, Name: id.Name}
	return c.create(ctx, "delete", t, connector.Identifiers{})
}

func (c *Conn) create(ctx context.Context, op string, t Ticket, id connector.Identifiers) (connector.Result, error) {
	t.CreatedAt = c.clock.Now()
	ref, err := c.sink.Create(ctx, t)
	if err != nil {
		return connector.Result{}, connector.Wrap(op, fmt.Errorf("making the ticket: %w", err))
	}
	return connector.Result{ID: id, Async: ref}, nil
}

func checkTarget(op string, class connector.ObjectClass, id connector.Identifiers) error {
	if class == "" {
		return connector.NewError(connector.CategorySchema, op, errors.New("empty object class"))
	}
	if id.IsZero() {
		return connector.NewError(connector.CategorySchema, op, errors.New("no UID or Name"))
	}
	return nil
}

func checkNames(op string, names []string) error {
	for _, n := range names {
		if n == "" {
			return connector.NewError(connector.CategorySchema, op, errors.New("an attribute has an empty name"))
		}
	}
	return nil
}

// rename reports the Name that changes leave when they touch the naming
// attribute.
func (c *Conn) rename(changes []connector.AttributeDelta) (string, bool) {
	touched := slices.ContainsFunc(changes, func(d connector.AttributeDelta) bool { return d.Name == c.naming })
	if !touched {
		return "", false
	}
	after := connector.ApplyChanges(nil, changes)
	return after.Get(c.naming), true
}

// OperationStatus reads ticket ref: open is AsyncInProgress; done is
// AsyncDone with the account's identifiers (none after a delete); rejected
// is AsyncFailed with an error carrying the reason, of the ticket's Cause
// category (CategoryPolicy when none). An
// unknown ref fails with CategoryNotFound; a ticket whose status a person
// mistyped fails with CategorySchema naming it.
func (c *Conn) OperationStatus(ctx context.Context, ref string) (connector.AsyncStatus, error) {
	t, err := c.sink.Status(ctx, ref)
	if errors.Is(err, ErrNoTicket) {
		return connector.AsyncStatus{}, connector.NewError(connector.CategoryNotFound, "operation status", err)
	}
	if err != nil {
		return connector.AsyncStatus{}, connector.Wrap("operation status", err)
	}
	switch t.Status {
	case StatusOpen:
		return connector.AsyncStatus{State: connector.AsyncInProgress}, nil
	case StatusDone:
		st := connector.AsyncStatus{State: connector.AsyncDone}
		if t.Operation != OpDelete {
			st.ID = connector.Identifiers{UID: t.UID, Name: t.Name}
			if t.NewName != "" {
				st.ID.Name = t.NewName
			}
		}
		return st, nil
	case StatusRejected:
		reason := t.Reason
		if reason == "" {
			reason = "no reason given"
		}
		return connector.AsyncStatus{State: connector.AsyncFailed,
			Err: connector.NewError(cause(t.Cause), string(t.Operation), fmt.Errorf("ticket %s rejected: %s", ref, reason))}, nil
	}
	return connector.AsyncStatus{}, connector.NewError(connector.CategorySchema, "operation status",
		fmt.Errorf("ticket %s has status %q (want open, done or rejected)", ref, t.Status))
}

// Get returns the account id as the done tickets left it; CategoryNotFound
// when they made none (or deleted it).
func (c *Conn) Get(ctx context.Context, class connector.ObjectClass, id connector.Identifiers) (connector.Object, error) {
	if err := checkTarget("get", class, id); err != nil {
		return connector.Object{}, err
	}
	st, err := c.state(ctx)
	if err != nil {
		return connector.Object{}, connector.Wrap("get", err)
	}
	o := st.find(class, id)
	if o == nil {
		return connector.Object{}, connector.NewError(connector.CategoryNotFound, "get",
			fmt.Errorf("no account of class %q with uid %q / name %q", class, id.UID, id.Name))
	}
	return o.Clone(), nil
}

// Search calls fn for every account of class that the done tickets left (or
// the one named opts.Name), ordered by Name.
func (c *Conn) Search(ctx context.Context, class connector.ObjectClass, opts connector.SearchOptions, fn func(connector.Object) error) error {
	st, err := c.state(ctx)
	if err != nil {
		return connector.Wrap("search", err)
	}
	var objs []*connector.Object
	for _, o := range st.objects {
		if o.Class == class && (opts.Name == "" || o.ID.Name == opts.Name) {
			objs = append(objs, o)
		}
	}
	slices.SortFunc(objs, func(a, b *connector.Object) int { return strings.Compare(a.ID.Name, b.ID.Name) })
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(o.Clone()); err != nil {
			return err
		}
	}
	return nil
}

// state is what the done tickets made: the accounts by UID.
type state struct {
	objects map[string]*connector.Object
}

func (s *state) find(class connector.ObjectClass, id connector.Identifiers) *connector.Object {
	if id.UID != "" {
		if o := s.objects[id.UID]; o != nil && o.Class == class {
			return o
		}
		return nil
	}
	for _, o := range s.objects {
		if o.Class == class && o.ID.Name == id.Name {
			return o
		}
	}
	return nil
}

// state replays the done tickets, in creation order. A done ticket about
// an account the replay does not know (made outside the connector) changes
// nothing.
func (c *Conn) state(ctx context.Context) (*state, error) {
	tickets, err := c.sink.List(ctx)
	if err != nil {
		return nil, err
	}
	st := &state{objects: map[string]*connector.Object{}}
	for _, t := range tickets {
		if t.Status != StatusDone {
			continue
		}
		switch t.Operation {
		case OpAdd:
			if t.UID == "" {
				continue
			}
			st.objects[t.UID] = &connector.Object{Class: t.Class, ID: connector.Identifiers{UID: t.UID, Name: t.Name},
				Attributes: t.Attributes.Normalize()}
		case OpModify:
			o := st.find(t.Class, connector.Identifiers{UID: t.UID, Name: t.Name})
			changes, err := fromChanges(t.Changes)
			if o == nil || err != nil {
				continue
			}
			o.Attributes = connector.ApplyChanges(o.Attributes, changes).Normalize()
			if n := o.Attributes.Get(c.naming); n != "" {
				o.ID.Name = n
			}
		case OpDelete:
			if o := st.find(t.Class, connector.Identifiers{UID: t.UID, Name: t.Name}); o != nil {
				delete(st.objects, o.ID.UID)
			}
		}
	}
	return st, nil
}
