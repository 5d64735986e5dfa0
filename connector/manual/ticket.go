package manual

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// ErrNoTicket is returned (wrapped) by a TicketSink for a reference it does
// not know. The connector reports it as connector.CategoryNotFound.
var ErrNoTicket = errors.New("manual: no such ticket")

// Status is the state of a ticket, as the person working it sets it.
type Status string

// The ticket statuses.
const (
	// StatusOpen: nobody has finished the work yet.
	StatusOpen Status = "open"
	// StatusDone: the work was done as the ticket asks.
	StatusDone Status = "done"
	// StatusRejected: the work will not be done; Ticket.Reason says why.
	StatusRejected Status = "rejected"
)

// Operation is what a ticket asks for.
type Operation string

// The ticket operations.
const (
	OpAdd    Operation = "add"
	OpModify Operation = "modify"
	OpDelete Operation = "delete"
)

// Change is one attribute change of a modify ticket, in words a person
// reads: Op is "add" (add these values), "delete" (remove these values, or
// the whole attribute when Values is empty) or "replace" (set exactly these
// values; none clears the attribute).
type Change struct {
	Op        string   `json:"op"`
	Attribute string   `json:"attribute"`
	Values    []string `json:"values,omitempty"`
}

// Ticket is one piece of work for a person: create, change or delete an
// account. It is what a TicketSink stores and what the person reads.
//
// Attribute values are written as the host gave them, because the person
// needs them; a host that must not put a value (an initial password) into a
// ticket leaves it out of the operation, or uses a sink that keeps tickets
// where such values may be.
type Ticket struct {
	// Ref is the sink's reference, set by Create.
	Ref       string                `json:"ref"`
	Operation Operation             `json:"operation"`
	Class     connector.ObjectClass `json:"class"`
	// UID and Name identify the account. For an add, the connector assigns
	// UID when it makes the ticket, and Name is the value of the naming
	// attribute.
	UID  string `json:"uid,omitempty"`
	Name string `json:"name,omitempty"`
	// NewName is the account's Name after a modify that renames it.
	NewName string `json:"newName,omitempty"`
	// Attributes are the new account's attributes (add).
	Attributes connector.Attributes `json:"attributes,omitempty"`
	// Changes are the attribute changes (modify), in order.
	Changes []Change `json:"changes,omitempty"`
	// Status is the ticket's state; Reason says why it was rejected.
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Cause, on a rejected ticket, says what kind of failure it is, so the
	// engine reacts as it would to a connector error: "policy" (also when
	// empty or unrecognized), "not found" (the account is not there: a
	// modify re-creates it or marks the shadow dead, a delete is done),
	// "already exists", "schema", "permission".
	Cause string `json:"cause,omitempty"`
	// CreatedAt is when the ticket was made; ClosedAt when it was marked
	// done or rejected (zero while open, or when the person did not say).
	CreatedAt time.Time `json:"createdAt"`
	ClosedAt  time.Time `json:"closedAt"`
}

// Clone returns a deep copy of t.
func (t Ticket) Clone() Ticket {
	t.Attributes = t.Attributes.Clone()
	if t.Changes != nil {
		ch := make([]Change, len(t.Changes))
		for i, c := range t.Changes {
			c.Values = slices.Clone(c.Values)
			ch[i] = c
		}
		t.Changes = ch
	}
	return t
}

// Validate reports a ticket no person could work: unknown operation or
// status, no class, no identifier, a change with an unknown op.
func (t Ticket) Validate() error {
	switch t.Operation {
	case OpAdd, OpModify, OpDelete:
	default:
		return fmt.Errorf("manual: ticket %q: unknown operation %q", t.Ref, t.Operation)
	}
	switch t.Status {
	case StatusOpen, StatusDone, StatusRejected:
	default:
		return fmt.Errorf("manual: ticket %q: unknown status %q (want open, done or rejected)", t.Ref, t.Status)
	}
	if t.Class == "" {
		return fmt.Errorf("manual: ticket %q: no class", t.Ref)
	}
	if t.UID == "" && t.Name == "" {
		return fmt.Errorf("manual: ticket %q: no uid or name", t.Ref)
	}
	for i, c := range t.Changes {
		if _, err := modOp(c.Op); err != nil {
			return fmt.Errorf("manual: ticket %q: change %d (%q): %w", t.Ref, i, c.Attribute, err)
		}
	}
	return nil
}

func modOp(op string) (connector.ModOp, error) {
	switch op {
	case "add":
		return connector.AddValues, nil
	case "delete":
		return connector.DeleteValues, nil
	case "replace":
		return connector.Replace, nil
	}
	return 0, fmt.Errorf("unknown op %q (want add, delete or replace)", op)
}

func toChanges(ds []connector.AttributeDelta) []Change {
	out := make([]Change, len(ds))
	for i, d := range ds {
		out[i] = Change{Op: d.Op.String(), Attribute: d.Name, Values: slices.Clone(d.Values)}
	}
	return out
}

func fromChanges(cs []Change) ([]connector.AttributeDelta, error) {
	out := make([]connector.AttributeDelta, len(cs))
	for i, c := range cs {
		op, err := modOp(c.Op)
		if err != nil {
			return nil, err
		}
		out[i] = connector.AttributeDelta{Op: op, Name: c.Attribute, Values: slices.Clone(c.Values)}
	}
	return out, nil
}

// TicketSink is where tickets go and where their status is read back: a
// folder of files (FileSink), a help-desk system, a mail queue with a reply
// parser. It is the SPI of this package.
//
// Implementations MUST be safe for concurrent use and MUST stop when ctx is
// done.
type TicketSink interface {
	// Create stores t as a new open ticket and returns its reference. The
	// reference MUST be unique for the sink's life and MUST NOT be
	// reused. t.Ref and t.Status are ignored.
	Create(ctx context.Context, t Ticket) (ref string, err error)
	// Status returns ticket ref as it stands now, with the status the
	// person set. An unknown ref fails with an error wrapping ErrNoTicket.
	Status(ctx context.Context, ref string) (Ticket, error)
	// List returns every ticket in the order they were created. The
	// connector derives what the resource holds (Get, Search) from the
	// tickets marked done, in that order.
	List(ctx context.Context) ([]Ticket, error)
}

// MemSink is a TicketSink in memory, for tests and hosts that put tickets in
// front of a person some other way. The zero value is ready to use; it is
// safe for concurrent use.
type MemSink struct {
	mu      sync.Mutex
	tickets []Ticket
}

// Create stores t with reference "M<n>".
func (s *MemSink) Create(ctx context.Context, t Ticket) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t = t.Clone()
	t.Ref = fmt.Sprintf("M%d", len(s.tickets)+1)
	t.Status, t.Reason, t.ClosedAt = StatusOpen, "", time.Time{}
	s.tickets = append(s.tickets, t)
	return t.Ref, nil
}

// Status returns ticket ref.
func (s *MemSink) Status(ctx context.Context, ref string) (Ticket, error) {
	if err := ctx.Err(); err != nil {
		return Ticket{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.index(ref)
	if i < 0 {
		return Ticket{}, fmt.Errorf("manual: ticket %q: %w", ref, ErrNoTicket)
	}
	return s.tickets[i].Clone(), nil
}

// List returns every ticket in creation order.
func (s *MemSink) List(ctx context.Context) ([]Ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Ticket, len(s.tickets))
	for i, t := range s.tickets {
		out[i] = t.Clone()
	}
	return out, nil
}

// Resolution is how a person closed a ticket.
type Resolution struct {
	// Status is StatusDone or StatusRejected.
	Status Status
	// Reason says why a ticket was rejected (or anything the person wants
	// to say about a done one).
	Reason string
	// Cause classifies a rejection (see Ticket.Cause). The zero value,
	// CategoryGeneric, is taken as CategoryPolicy.
	Cause connector.Category
}

// Close closes open ticket ref as r says, at time at, as the person working
// it would. It fails for an unknown ref (ErrNoTicket), a ticket already
// closed, or a status other than done or rejected.
func (s *MemSink) Close(ref string, r Resolution, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.index(ref)
	if i < 0 {
		return fmt.Errorf("manual: ticket %q: %w", ref, ErrNoTicket)
	}
	return closeTicket(&s.tickets[i], r, at)
}

func (s *MemSink) index(ref string) int {
	return slices.IndexFunc(s.tickets, func(t Ticket) bool { return t.Ref == ref })
}

func closeTicket(t *Ticket, r Resolution, at time.Time) error {
	if r.Status != StatusDone && r.Status != StatusRejected {
		return fmt.Errorf("manual: ticket %q: cannot close with status %q (want done or rejected)", t.Ref, r.Status)
	}
	if t.Status != StatusOpen {
		return fmt.Errorf("manual: ticket %q is already %s", t.Ref, t.Status)
	}
	t.Status, t.Reason, t.ClosedAt, t.Cause = r.Status, r.Reason, at, ""
	if r.Status == StatusRejected {
		if _, ok := causes[r.Cause.String()]; !ok || r.Cause == connector.CategoryGeneric {
			r.Cause = connector.CategoryPolicy
		}
		t.Cause = r.Cause.String()
	}
	return nil
}

// causes are the categories a person may give a rejection, by name.
var causes = map[string]connector.Category{}

func init() {
	for _, c := range []connector.Category{connector.CategoryPolicy, connector.CategoryNotFound,
		connector.CategoryAlreadyExists, connector.CategorySchema, connector.CategoryPermission} {
		causes[c.String()] = c
	}
}

// cause returns the category of a rejection's cause text.
func cause(text string) connector.Category {
	if c, ok := causes[strings.ToLower(strings.TrimSpace(text))]; ok {
		return c
	}
	return connector.CategoryPolicy
}
