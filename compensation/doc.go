// Package compensation synchronizes one change of a managed object to an
// ordered list of targets all or nothing: every target takes the change, or
// the managed object is put back to its old value and that revert is
// synchronized to the targets already attempted. It is the "onSync
// compensation" pattern of IdM servers, as a library.
//
// The host owns managed objects (users, roles, ...) and their store; the
// host stores a change first and then calls [Synchronizer.Sync] with it, at
// the point where an IdM server would run its onSync hook. Each [Target] is a
// mapping the host provides: how to apply the object to one resource,
// typically through the consistency engine or a connector.
//
// # One run
//
// Sync calls the targets in their configured order. When every target
// succeeds the run is done. When target k fails, the run stops there and
// compensates:
//
//  1. the old value is written back to the [ManagedStore]: a create is
//     reverted by deleting the object, a delete by putting the old object
//     back, an update by putting the old value;
//  2. the revert (the change with its action reversed and Old and New
//     swapped: see [Change.Revert]) is synchronized to targets k, k-1,
//     down to the first. Target k is included because a failure can be
//     partial.
//
// Targets after k were never called and still hold the old value, so they
// are left alone.
//
// # Why the revert runs in reverse order
//
// The revert is a saga's undo: the most recent step is undone first. Hosts
// order their targets so that a later target may depend on an earlier one (a
// ticket or an HR record referring to the directory account created before
// it). Undoing in reverse keeps every target's dependencies in place while it
// is being undone, and mirrors the forward order exactly: a create that went
// to the directory and then to HR is undone by deleting from HR and then
// from the directory.
//
// # No second compensation
//
// Every context the compensation passes on — to the managed store and to
// the targets — is marked: [IsCompensation] reports true for it, so the
// host's own hooks can tell a revert from an ordinary change. A Sync called
// with a marked context (for example by a store hook that re-synchronizes
// every write, as an IdM server's implicit synchronization does) applies the
// change to every target and never compensates: a failure there is logged
// as a warning and returned, and the run goes on with the next target. A
// failure while reverting is treated the same way. So no wiring of hooks can
// make compensation loop, provided hooks pass on the context they were
// given. With such a hook the revert reaches a target twice (once through
// the hook, once from the compensation itself), which a target written as
// [SyncFunc] asks takes in its stride.
//
// Every failure during a compensation is logged through slog at level Warn
// naming the synchronization action as notifyCreate, notifyUpdate or
// notifyDelete (the action being synchronized when it failed, that is the
// revert's action; see [Action.Notify]), the target, the error, and the
// original error that caused the compensation. The returned [*Error] carries
// both failures, so that errors.Is finds each, and names the targets left
// out of step with the managed object.
//
// # Best-effort targets
//
// A target marked [Target.BestEffort] does not take part in compensation:
// its failure is logged and the run goes on, and a revert is not sent to
// it. After a compensated run, a best-effort target that took the change
// still holds it; the [Report] lists it among the targets out of step so
// that the host can reconcile it. A best-effort failure alone does not make
// Sync return an error: the report says so. (A Sync that the host's hooks
// call with a compensation's context is an application of a change like any
// other, and does reach best-effort targets.)
//
// # Cancellation
//
// The forward run stops when its context is done: no further target is
// called. What was already applied is still compensated, because leaving
// half a change behind is the very thing this package exists to prevent.
// The compensation therefore runs under a context detached from the
// caller's cancellation (context.WithoutCancel, so values such as trace IDs
// still flow) and bounded by [Config.CompensationTimeout] on the configured
// clock. When that limit passes, the targets not yet reverted are reported
// as revert failures with [ErrCompensationTimeout].
//
// # Deletes of missing objects
//
// As everywhere in umbra, deleting an object that is not there is success:
// a target whose delete fails with a [connector.ErrNotFound] category
// counts as having applied (or reverted) it, and so does a managed store
// whose Delete finds nothing.
//
// # Managed objects as attributes
//
// A managed object is carried as [connector.Attributes]: the multi-valued
// attribute map every umbra package already speaks, with Clone and Equal,
// and the form a target most often needs anyway to call a connector. A
// host whose managed objects are Go structs maps them at the two edges it
// owns (the ManagedStore and each Target), which keeps this package free of
// type parameters and of any knowledge of the host's model. Old is nil for a
// create and New is nil for a delete.
//
// # Concurrency
//
// A Synchronizer is immutable after New and safe for concurrent use. Runs
// for different objects may proceed at once; the host MUST NOT run two
// Syncs for the same managed object at the same time (it would not know
// which old value wins), as it would not apply two writes to it at once.
package compensation
