// Package consistency is the provisioning engine: Add, Modify, Delete and
// Get of shadows through a connector, kept consistent when the resource is
// slow, down, changed behind the engine's back, or fails half-way.
//
// # What happens to an operation
//
// An operation is executed at once when the resource is up and the shadow
// has no unfinished work. Otherwise it becomes a pending operation of the
// shadow (shadow.PendingOperation), and the caller gets an Outcome whose
// Status says Pending (postponed, retried by refresh), Queued (grouped,
// executed by propagation) or InProgress (async on the resource) — not an
// error. Per-shadow order always holds: a new operation on a shadow with
// unfinished work waits behind it, and nothing follows a pending delete (a
// modify fails with ErrShadowGone, a second delete is the first).
//
// The connector's error category decides what follows (see connector.Category):
//
//   - communication, not sent: the resource is marked down and the operation
//     retried later; while down, new operations are postponed without a call
//     until a probe (connector.Tester, at most once per ProbeInterval) or a
//     refresh finds it up
//   - communication, outcome unknown: as above, but before the next attempt
//     the engine reads the resource to learn whether the first took effect —
//     an add is looked up by its Name, so no second account is made
//   - throttled: retried at the time the resource gave, not counted as an
//     attempt
//   - already exists (add): discovery reads the object and asks the host's
//     DiscoveryHook to link it or fail; a failure records the found object
//     as a discovered shadow
//   - not found: a delete is done; a modify or get re-creates the object when
//     the shadow's origin is assigned, else marks the shadow dead
//   - schema, configuration, policy, permission, generic: fatal, recorded on
//     the shadow, returned; never retried (generic can be made retryable). A
//     configuration error marks the resource Broken: operations are then
//     postponed, and the resource is not probed, until MarkUp or Probe
//
// Retries wait per the resource's Backoff (fixed, exponential with jitter,
// or a schedule); after OperationRetryMaxAttempts they are given up, and a
// given-up modify or delete marks the shadow NeedsReconciliation.
//
// # Refreshing one shadow
//
// RefreshShadow is the step that the refresh task, Get and reconciliation
// share: async status checks, due retries, retention of completed
// operations, deletion of dead shadows after retention. Every attempt is
// written ahead (saved as in flight, outcome unknown) before the call, so a
// process that dies mid-call leaves a shadow that the next refresh checks
// against the resource instead of sending the operation twice. PropagateShadow
// executes a shadow's grouped operations merged into one call.
//
// # Operators and hosts
//
// StuckOperations, RetryNow, CancelOperation, Probe, SetMaintenance and
// Status are functions a host puts behind its admin screens; Observer
// receives every outcome for audit and metrics.
package consistency
