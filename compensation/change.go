package compensation

import (
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/connector"
)

// ErrInvalidChange is returned (wrapped) by Sync for a change that cannot be
// synchronized: an unknown action or an empty ID. Nothing is called.
var ErrInvalidChange = errors.New("compensation: invalid change")

// Action is what happened to a managed object. The zero value is not a
// valid action.
type Action uint8

// The actions.
const (
	// Create: the object is new. Change.Old is nil.
	Create Action = iota + 1
	// Update: the object changed from Change.Old to Change.New.
	Update
	// Delete: the object is gone. Change.New is nil.
	Delete
)

// String returns "create", "update" or "delete".
func (a Action) String() string {
	switch a {
	case Create:
		return "create"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Notify returns the name IdM servers give the synchronization of a: one of
// notifyCreate, notifyUpdate or notifyDelete. Compensation warnings name
// the action this way, so that operators find them as they would in an IdM
// server's log.
func (a Action) Notify() string {
	switch a {
	case Create:
		return "notifyCreate"
	case Update:
		return "notifyUpdate"
	case Delete:
		return "notifyDelete"
	}
	return "notify" + a.String()
}

// Revert returns the action that undoes a: Delete for Create, Create for
// Delete, Update for Update. An invalid action reverts to itself.
func (a Action) Revert() Action {
	switch a {
	case Create:
		return Delete
	case Delete:
		return Create
	}
	return a
}

func (a Action) valid() bool { return a >= Create && a <= Delete }

// Change is one change of a managed object: what happened, to which object,
// and its value before and after.
//
// Old is nil for a Create and New is nil for a Delete; Sync does not read
// the one that does not apply. Attribute values may be secret (passwords):
// this package never logs them nor puts them in errors.
type Change struct {
	// Action is what happened.
	Action Action
	// ID identifies the managed object in the host's store. Required.
	ID string
	// Old is the object before the change (nil for a Create).
	Old connector.Attributes
	// New is the object after the change (nil for a Delete).
	New connector.Attributes
}

// Validate reports an unknown action or an empty ID, wrapping
// ErrInvalidChange.
func (c Change) Validate() error {
	if !c.Action.valid() {
		return fmt.Errorf("%w: unknown Action %d", ErrInvalidChange, uint8(c.Action))
	}
	if c.ID == "" {
		return fmt.Errorf("%w: empty ID", ErrInvalidChange)
	}
	return nil
}

// Revert returns the change that undoes c: the reverted action, the same
// ID, and Old and New swapped. The attributes are shared with c, not
// copied.
func (c Change) Revert() Change {
	return Change{Action: c.Action.Revert(), ID: c.ID, Old: c.New, New: c.Old}
}

// clone returns c with its attributes deep-copied, and with the value that
// does not apply to its action dropped, so that a target sees exactly what
// the action documents.
func (c Change) clone() Change {
	out := Change{Action: c.Action, ID: c.ID}
	if c.Action != Create {
		out.Old = c.Old.Clone()
	}
	if c.Action != Delete {
		out.New = c.New.Clone()
	}
	return out
}
