package memconn

import (
	"context"
	"fmt"
	"slices"

	"github.com/umbra-idm/umbra/connector"
)

type asyncOp struct {
	kind    CallKind
	class   connector.ObjectClass
	id      connector.Identifiers      // modify, delete
	attrs   connector.Attributes       // add (normalized)
	changes []connector.AttributeDelta // modify
	state   connector.AsyncState
	result  connector.Identifiers
	err     error
}

func (c *Conn) newAsyncLocked(op *asyncOp) string {
	c.nextRef++
	ref := fmt.Sprintf("a-%06d", c.nextRef)
	op.state = connector.AsyncInProgress
	c.asyncOps[ref] = op
	c.pending = append(c.pending, ref)
	return ref
}

// SetAsync switches Async mode on or off for the writes that follow.
// Operations already under way stay under way.
func (c *Conn) SetAsync(on bool) {
	c.mu.Lock()
	c.async = on
	c.mu.Unlock()
}

// OperationStatus reports the state of the asynchronous operation ref. An
// unknown ref fails with CategoryNotFound.
func (c *Conn) OperationStatus(ctx context.Context, ref string) (connector.AsyncStatus, error) {
	if _, err := c.begin(ctx, CallStatus); err != nil {
		return connector.AsyncStatus{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	op := c.asyncOps[ref]
	if op == nil {
		return connector.AsyncStatus{}, connector.NewError(connector.CategoryNotFound, "operation status", fmt.Errorf("no asynchronous operation %q", ref))
	}
	return connector.AsyncStatus{State: op.state, ID: op.result, Err: op.err}, nil
}

// PendingAsync returns the references of the operations under way, oldest
// first.
func (c *Conn) PendingAsync() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pending)
}

func (c *Conn) takeLocked(ref string) (*asyncOp, error) {
	op := c.asyncOps[ref]
	if op == nil {
		return nil, connector.NewError(connector.CategoryNotFound, "complete async", fmt.Errorf("no asynchronous operation %q", ref))
	}
	if op.state != connector.AsyncInProgress {
		return nil, fmt.Errorf("memconn: asynchronous operation %q is already %s", ref, op.state)
	}
	c.pending = slices.DeleteFunc(c.pending, func(r string) bool { return r == ref })
	return op, nil
}

// CompleteAsync carries out the operation ref now, as the person working the
// ticket would. When the operation itself fails (the object is missing, the
// name is taken), the operation ends AsyncFailed with that categorized error
// and CompleteAsync still returns nil: the error is the operation's, seen
// through OperationStatus. CompleteAsync fails only for a ref that is
// unknown (CategoryNotFound) or no longer in progress. It is not a call: no
// fault applies and nothing is counted.
func (c *Conn) CompleteAsync(ref string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	op, err := c.takeLocked(ref)
	if err != nil {
		return err
	}
	var id connector.Identifiers
	switch op.kind {
	case CallAdd:
		id, err = c.addLocked("add", op.class, op.attrs)
	case CallModify:
		id, err = c.modifyLocked("modify", op.class, op.id, op.changes)
	default:
		err = c.deleteLocked("delete", op.class, op.id)
	}
	if err != nil {
		op.state, op.err = connector.AsyncFailed, err
		return nil
	}
	op.state, op.result = connector.AsyncDone, id
	return nil
}

// CompleteAllAsync completes every operation under way, oldest first, and
// returns how many it completed.
func (c *Conn) CompleteAllAsync() int {
	n := 0
	for _, ref := range c.PendingAsync() {
		if c.CompleteAsync(ref) == nil {
			n++
		}
	}
	return n
}

// FailAsync ends the operation ref as failed with err (nil: a
// CategoryGeneric error) without carrying it out, as a person rejecting the
// ticket would. It fails like CompleteAsync for an unknown or finished ref.
func (c *Conn) FailAsync(ref string, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	op, e := c.takeLocked(ref)
	if e != nil {
		return e
	}
	if err == nil {
		err = connector.NewError(connector.CategoryGeneric, string(op.kind), fmt.Errorf("operation %q rejected: %w", ref, ErrInjected))
	}
	op.state, op.err = connector.AsyncFailed, err
	return nil
}
