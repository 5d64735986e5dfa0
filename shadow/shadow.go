package shadow

import (
	"fmt"
	"slices"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// Origin says how a shadow came to be, which decides what discovery does
// when its object has vanished from the resource.
type Origin uint8

// The origins.
const (
	// OriginAssigned: the host asked for the object (an assignment, a
	// role). A vanished object is re-created.
	OriginAssigned Origin = iota + 1
	// OriginDiscovered: umbra found the object on the resource (live sync,
	// reconciliation, an add that collided). A vanished object marks the
	// shadow dead.
	OriginDiscovered
)

// String returns the Origin as text for logs and errors.
func (o Origin) String() string {
	switch o {
	case OriginAssigned:
		return "assigned"
	case OriginDiscovered:
		return "discovered"
	}
	return fmt.Sprintf("Origin(%d)", o)
}

// Shadow is the local record of one resource object.
//
// A Shadow value is owned by whoever holds it: stores return fresh copies and
// take copies on write, so callers may modify what they get.
type Shadow struct {
	// ID is the shadow's own identifier, assigned by the store on Create
	// when empty.
	ID string
	// ResourceID names the resource the object lives on.
	ResourceID string
	// Class is the object's class on the resource.
	Class connector.ObjectClass
	// Kind and Intent are the host's classification (account/default,
	// entitlement/group, ...). umbra stores them and never reads them.
	Kind, Intent string
	// UID and Name are the object's identifiers; UID is empty until the
	// object exists on the resource.
	UID  string
	Name string
	// Attributes is the cache of the object's attributes as the resource
	// last reported them (the current view).
	Attributes connector.Attributes
	// Exists is true once the object was created on the resource (or
	// found there).
	Exists bool
	// Dead is true when the object is gone; DeadSince says since when. A
	// dead shadow is kept for the resource's DeadShadowRetentionPeriod.
	Dead      bool
	DeadSince time.Time
	// Origin says how the shadow came to be.
	Origin Origin
	// Version is the optimistic-concurrency version: set by the store, 1
	// after Create, incremented by every Update. Update and Delete take the
	// version the caller read and fail with ErrConflict when it moved.
	Version int64
	// Pending are the shadow's pending operations, oldest first, finished
	// ones included until their retention ends.
	Pending []PendingOperation
	// NextDue is when the earliest pending operation falls due for work
	// (a retry, an async status check, a grouped execution, a retention
	// clean-up); zero when nothing is due. The engine sets it; stores index
	// it so that due work costs in proportion to itself.
	NextDue time.Time
	// NeedsReconciliation is set when a modify or delete was given up or
	// failed fatally: the change is not silently lost; reconciliation and
	// operators find it with Query.NeedsReconciliation.
	NeedsReconciliation bool
	// ReconciledAt is when a reconciliation run last saw the object on the
	// resource (zero: never). Reconciliation marks every object it sees and
	// then sweeps the shadows left unmarked (Query.ReconciledBefore), so it
	// needs no in-memory set of what it saw.
	ReconciledAt time.Time
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt, UpdatedAt time.Time
}

// Clone returns a deep copy of s.
func (s *Shadow) Clone() *Shadow {
	if s == nil {
		return nil
	}
	c := *s
	c.Attributes = s.Attributes.Clone()
	if s.Pending != nil {
		c.Pending = make([]PendingOperation, len(s.Pending))
		for i, op := range s.Pending {
			c.Pending[i] = op.Clone()
		}
	}
	return &c
}

// Identifiers returns the shadow's object identifiers.
func (s *Shadow) Identifiers() connector.Identifiers {
	return connector.Identifiers{UID: s.UID, Name: s.Name}
}

// Live reports whether the shadow counts for identity uniqueness: not dead
// and its object exists on the resource.
func (s *Shadow) Live() bool { return s.Exists && !s.Dead }

// Unfinished reports whether the shadow has a pending operation that is not
// completed.
func (s *Shadow) Unfinished() bool {
	for i := range s.Pending {
		if !s.Pending[i].Completed() {
			return true
		}
	}
	return false
}

// OldestUnfinished returns the request time of the oldest unfinished pending
// operation of type t (any type when t is 0), and false when there is none.
func (s *Shadow) OldestUnfinished(t OpType) (time.Time, bool) {
	var oldest time.Time
	found := false
	for i := range s.Pending {
		op := &s.Pending[i]
		if op.Completed() || (t != 0 && op.Type != t) {
			continue
		}
		if !found || op.RequestedAt.Before(oldest) {
			oldest, found = op.RequestedAt, true
		}
	}
	return oldest, found
}

// Operation returns a pointer to the pending operation with the given ID, or
// nil.
func (s *Shadow) Operation(id int64) *PendingOperation {
	for i := range s.Pending {
		if s.Pending[i].ID == id {
			return &s.Pending[i]
		}
	}
	return nil
}

// NextOperationID returns an ID for a new pending operation, one above the
// highest in the shadow.
func (s *Shadow) NextOperationID() int64 {
	var max int64
	for _, op := range s.Pending {
		if op.ID > max {
			max = op.ID
		}
	}
	return max + 1
}

// State is the lifecycle state a reader thinks in. It is derived from
// Exists, Dead and the pending add/delete, never stored.
type State uint8

// The lifecycle states.
const (
	// StateProposed: not on the resource, no add under way (grouped or not
	// yet attempted).
	StateProposed State = iota + 1
	// StateBeingCreated: an add is pending (retry or async).
	StateBeingCreated
	// StateLive: the object exists, nothing is deleting it.
	StateLive
	// StateBeingDeleted: the object exists and a delete is pending.
	StateBeingDeleted
	// StateDead: the object is gone.
	StateDead
)

// String returns the State as text for logs and errors.
func (st State) String() string {
	switch st {
	case StateProposed:
		return "proposed"
	case StateBeingCreated:
		return "being created"
	case StateLive:
		return "live"
	case StateBeingDeleted:
		return "being deleted"
	case StateDead:
		return "dead"
	}
	return fmt.Sprintf("State(%d)", st)
}

// State derives the shadow's lifecycle state.
func (s *Shadow) State() State {
	if s.Dead {
		return StateDead
	}
	var pendingAdd, pendingDelete bool
	for i := range s.Pending {
		op := &s.Pending[i]
		if op.Completed() {
			continue
		}
		switch op.Delta.Type {
		case connector.DeltaAdd:
			pendingAdd = op.Type != OpGrouped
		case connector.DeltaDelete:
			pendingDelete = true
		}
	}
	switch {
	case !s.Exists && pendingAdd:
		return StateBeingCreated
	case !s.Exists:
		return StateProposed
	case pendingDelete:
		return StateBeingDeleted
	}
	return StateLive
}

// Validate reports a shadow no store should accept: no resource, no class,
// an unknown origin, a pending operation with an invalid delta or status.
// The message names the field.
func (s *Shadow) Validate() error {
	switch {
	case s.ResourceID == "":
		return fmt.Errorf("shadow %q: ResourceID is empty", s.ID)
	case s.Class == "":
		return fmt.Errorf("shadow %q: Class is empty", s.ID)
	case s.Origin != OriginAssigned && s.Origin != OriginDiscovered:
		return fmt.Errorf("shadow %q: Origin %d is not assigned or discovered", s.ID, s.Origin)
	case s.Exists && s.UID == "" && s.Name == "":
		return fmt.Errorf("shadow %q: Exists is true but UID and Name are empty", s.ID)
	}
	for i := range s.Pending {
		if err := s.Pending[i].Validate(); err != nil {
			return fmt.Errorf("shadow %q: Pending[%d]: %w", s.ID, i, err)
		}
	}
	return nil
}

// OpType is why a pending operation exists.
type OpType uint8

// The pending operation types.
const (
	// OpRetry: the operation failed (communication) and will be retried.
	OpRetry OpType = iota + 1
	// OpGrouped: queued by operation grouping; propagation executes it.
	OpGrouped
	// OpAsync: under way on an asynchronous or manual resource; AsyncRef
	// is the resource's reference.
	OpAsync
)

// String returns the OpType as text for logs and errors.
func (t OpType) String() string {
	switch t {
	case OpRetry:
		return "retry"
	case OpGrouped:
		return "grouped"
	case OpAsync:
		return "async"
	}
	return fmt.Sprintf("OpType(%d)", t)
}

// ExecStatus is how far a pending operation's execution got.
type ExecStatus uint8

// The execution statuses.
const (
	// StatusRequested: recorded, not yet sent.
	StatusRequested ExecStatus = iota + 1
	// StatusPendingExecution: waiting for its time (retry, grouping).
	StatusPendingExecution
	// StatusExecuting: sent; the resource is working on it (async).
	StatusExecuting
	// StatusCompleted: finished; Result says how.
	StatusCompleted
)

// String returns the ExecStatus as text for logs and errors.
func (s ExecStatus) String() string {
	switch s {
	case StatusRequested:
		return "requested"
	case StatusPendingExecution:
		return "pending execution"
	case StatusExecuting:
		return "executing"
	case StatusCompleted:
		return "completed"
	}
	return fmt.Sprintf("ExecStatus(%d)", s)
}

// OpResult is the outcome of a pending operation.
type OpResult uint8

// The results.
const (
	ResultInProgress OpResult = iota + 1
	ResultSuccess
	ResultFailure
)

// String returns the OpResult as text for logs and errors.
func (r OpResult) String() string {
	switch r {
	case ResultInProgress:
		return "in progress"
	case ResultSuccess:
		return "success"
	case ResultFailure:
		return "failure"
	}
	return fmt.Sprintf("OpResult(%d)", r)
}

// PendingOperation is an unfinished (or recently finished) operation kept in
// a shadow.
type PendingOperation struct {
	// ID numbers the operation within its shadow (see NextOperationID).
	ID int64
	// Delta is what the operation does.
	Delta connector.Delta
	Type  OpType
	// Status and Result say how far it got and how it ended.
	Status ExecStatus
	Result OpResult
	// Attempt counts the attempts made so far (0: none yet).
	Attempt int
	// AsyncRef is the resource's reference for an async operation.
	AsyncRef string
	// RequestedAt is when the host asked for it; LastAttemptAt when it was
	// last sent; NextAttemptAt when it may be sent again (retry, throttle);
	// CompletedAt when it finished.
	RequestedAt, LastAttemptAt, NextAttemptAt, CompletedAt time.Time
	// LastError is the text of the last failure, LastErrorCategory its
	// category. The text never carries secrets (connector errors don't).
	LastError         string
	LastErrorCategory connector.Category
	// CancelReason is set when an operator cancelled the operation.
	CancelReason string
}

// Completed reports whether the operation has finished (either way).
func (op *PendingOperation) Completed() bool { return op.Status == StatusCompleted }

// Clone returns a deep copy of op.
func (op PendingOperation) Clone() PendingOperation {
	op.Delta = op.Delta.Clone()
	return op
}

// Validate reports an operation with an invalid delta, type, status or
// result.
func (op *PendingOperation) Validate() error {
	if err := op.Delta.Validate(); err != nil {
		return fmt.Errorf("operation %d: %w", op.ID, err)
	}
	switch {
	case op.Type < OpRetry || op.Type > OpAsync:
		return fmt.Errorf("operation %d: unknown Type %d", op.ID, op.Type)
	case op.Status < StatusRequested || op.Status > StatusCompleted:
		return fmt.Errorf("operation %d: unknown Status %d", op.ID, op.Status)
	case op.Result < ResultInProgress || op.Result > ResultFailure:
		return fmt.Errorf("operation %d: unknown Result %d", op.ID, op.Result)
	case op.Status == StatusCompleted && op.Result == ResultInProgress:
		return fmt.Errorf("operation %d: completed but Result is in progress", op.ID)
	case op.Attempt < 0:
		return fmt.Errorf("operation %d: negative Attempt %d", op.ID, op.Attempt)
	}
	return nil
}

// SortPending orders ops by ID (the order they were requested in).
func SortPending(ops []PendingOperation) {
	slices.SortStableFunc(ops, func(a, b PendingOperation) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}
