package connector

import (
	"context"
	"fmt"
)

// Connector is the required part of the resource SPI: create, modify,
// delete and read one object. Everything else a resource can do is an
// optional interface below (Searcher, LiveSyncer, AsyncOperator, Tester),
// discovered by type assertion; the engines decide what to do when one is
// missing and refuse at construction when a setting needs it.
//
// Errors MUST carry a category (return *Error, or an error Classify
// understands). A Connector MUST be safe for concurrent use: engines call it
// from several goroutines at once. Every method MUST stop when ctx is done.
type Connector interface {
	// Add creates an object of class with attrs and returns the identifiers
	// the resource gave it, or an async reference (Result.Async) when the
	// work is under way. An existing object with the same secondary
	// identifier fails with CategoryAlreadyExists.
	Add(ctx context.Context, class ObjectClass, attrs Attributes) (Result, error)
	// Modify applies changes to the object id (UID, or Name when UID is
	// empty). When the changes rename the object, Result.ID carries the
	// new identifiers. A missing object fails with CategoryNotFound.
	Modify(ctx context.Context, class ObjectClass, id Identifiers, changes []AttributeDelta) (Result, error)
	// Delete deletes the object id. A missing object fails with
	// CategoryNotFound (the engine treats that as success).
	Delete(ctx context.Context, class ObjectClass, id Identifiers) (Result, error)
	// Get reads the object id. A missing object fails with
	// CategoryNotFound.
	Get(ctx context.Context, class ObjectClass, id Identifiers) (Object, error)
}

// Result is what a write operation returned.
type Result struct {
	// ID identifies the object after the operation (after a rename, the
	// new Name). Empty after a delete.
	ID Identifiers
	// Async, when not empty, says that the operation was accepted but not
	// done: the connector is an AsyncOperator and Async is the reference
	// to ask it about.
	Async string
}

// SearchOptions narrow a search. The zero value returns every object of the
// class.
type SearchOptions struct {
	// Name, when set, returns only the object whose secondary identifier
	// equals it (at most one). Connectors escape it for their query
	// language.
	Name string
	// PageSize is how many objects the connector asks the resource for at
	// a time; zero lets the connector choose.
	PageSize int
}

// Searcher is implemented by a connector that can list objects. The engine
// uses it to learn whether an add of unknown outcome took effect and for
// reconciliation.
type Searcher interface {
	// Search calls fn for every matching object, page by page, never
	// holding all of them in memory. It stops and returns fn's error when
	// fn fails, and stops when ctx is done.
	Search(ctx context.Context, class ObjectClass, opts SearchOptions, fn func(Object) error) error
}

// Token is an opaque position in a resource's change stream. The empty token
// means "no position".
type Token string

// ChangeType is what happened to an object.
type ChangeType uint8

// The change types.
const (
	ChangeCreate ChangeType = iota + 1
	ChangeModify
	ChangeDelete
	// ChangeCreateOrModify is sent by resources that cannot tell the two
	// apart (a modifyTimestamp search).
	ChangeCreateOrModify
)

// String returns the ChangeType as text for logs and errors.
func (t ChangeType) String() string {
	switch t {
	case ChangeCreate:
		return "create"
	case ChangeModify:
		return "modify"
	case ChangeDelete:
		return "delete"
	case ChangeCreateOrModify:
		return "create-or-modify"
	}
	return fmt.Sprintf("ChangeType(%d)", t)
}

// Change is one event of a resource's change stream.
type Change struct {
	Type  ChangeType
	Class ObjectClass
	// ID identifies the object. For a rename, ID holds the new Name and
	// OldName the previous one.
	ID      Identifiers
	OldName string
	// Object holds the object's attributes after the change when the
	// resource sent them; nil when it did not (the engine then reads the
	// object with Get). Always nil for a delete.
	Object Attributes
	// Token is the position just after this change. With precise tokens
	// every change has its own; with imprecise tokens it may be empty and
	// only ChangeBatch.Token counts.
	Token Token
}

// Validate reports a change the engine cannot process: unknown type, no
// identifier, no class.
func (c Change) Validate() error {
	if c.Type < ChangeCreate || c.Type > ChangeCreateOrModify {
		return fmt.Errorf("connector: change has unknown type %d", c.Type)
	}
	if c.Class == "" {
		return fmt.Errorf("connector: %s change has no object class", c.Type)
	}
	if c.ID.IsZero() {
		return fmt.Errorf("connector: %s change of class %q has no identifier", c.Type, c.Class)
	}
	return nil
}

// ChangeBatch is one fetch from a change stream.
type ChangeBatch struct {
	// Changes in stream order.
	Changes []Change
	// Token is the position after the last change of the batch: where the
	// next fetch starts. With no changes it is the position given, or a
	// newer one.
	Token Token
	// More is true when the resource holds further changes after Token.
	More bool
}

// LiveSyncer is implemented by a connector that can report changes.
type LiveSyncer interface {
	// PreciseTokens reports whether every change carries its own token, so
	// that processing may resume after any change. When false, only the
	// batch token is a safe place to resume.
	PreciseTokens() bool
	// LatestToken returns the position at the end of the stream now.
	LatestToken(ctx context.Context, class ObjectClass) (Token, error)
	// FetchChanges returns up to max changes after from (max ≤ 0: the
	// connector chooses). An empty from means the beginning of the stream.
	// A token the connector cannot parse fails with CategorySchema and
	// names the problem.
	FetchChanges(ctx context.Context, class ObjectClass, from Token, max int) (ChangeBatch, error)
}

// AsyncState is the state of an asynchronous operation.
type AsyncState uint8

// The async states.
const (
	AsyncInProgress AsyncState = iota + 1
	AsyncDone
	AsyncFailed
)

// String returns the AsyncState as text for logs and errors.
func (s AsyncState) String() string {
	switch s {
	case AsyncInProgress:
		return "in progress"
	case AsyncDone:
		return "done"
	case AsyncFailed:
		return "failed"
	}
	return fmt.Sprintf("AsyncState(%d)", s)
}

// AsyncStatus answers AsyncOperator.OperationStatus.
type AsyncStatus struct {
	State AsyncState
	// ID identifies the object when the operation created or renamed it.
	ID Identifiers
	// Err says why an operation failed (categorized).
	Err error
}

// AsyncOperator is implemented by a connector whose writes may finish later
// (a manual resource where a person works from a ticket, a provisioning API
// that queues requests).
type AsyncOperator interface {
	// OperationStatus reports the state of the operation ref, as returned
	// in Result.Async. An unknown ref fails with CategoryNotFound.
	OperationStatus(ctx context.Context, ref string) (AsyncStatus, error)
}

// Tester is implemented by a connector that can check that its resource
// answers, cheaply. The engine uses it to probe a resource marked down.
type Tester interface {
	// Test returns nil when the resource can be reached and used.
	Test(ctx context.Context) error
}
