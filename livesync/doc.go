// Package livesync is the live synchronization engine: it reads a
// resource's change stream after a stored token, correlates each change to a
// shadow, calls the host's handler and moves the token — after each change
// when the connector's tokens are precise, after the whole fetch when not.
//
// # A run
//
// A Task follows one (resource, object class) stream under a task name; its
// position is a connector.Token kept in a TokenStore under that TokenKey.
// Task.Run does one run:
//
//  1. No token stored: store the resource's current token (LatestToken) and
//     process nothing — history is not replayed — unless
//     Config.StartFromBeginning.
//  2. Offer the changes set aside by earlier runs again, oldest first.
//  3. Fetch the changes after the token and process them, fetch after fetch,
//     until the stream is exhausted, Config.BatchSize changes were read, or
//     an error stops the run.
//
// Processing one change: check it (a malformed change is an error of
// category schema, never applied); read the object with a Get when the
// change carries no attributes (a Get that finds nothing makes it a delete);
// correlate it to a live shadow by UID, then by Name (and the old name of a
// rename), never to a shadow of another UID; create a shadow for an unknown
// object (origin discovered), update the cached attributes and identifiers
// of a known one, mark it dead (DeadSince from the clock) on a delete; then
// call the handler with clones of the shadow before and after.
//
// # Tokens and delivery
//
// The shadow is stored and the handler called before the token moves past a
// change, so every change reaches the handler at least once; a crash repeats
// what was done after the last stored token. With precise tokens the token
// moves after every change, or after every Config.GroupCommit changes (then
// a crash repeats at most one group); with imprecise tokens it moves only
// when a whole fetch is done, and a stopped run repeats the whole fetch. A
// stopped run always leaves the token before the first change not done.
//
// A group commit writes the group's shadows and the token in one
// transaction when the store implements GroupCommitter (a SQL store that
// keeps tokens too), or the shadows in one shadow.Batcher transaction just
// before the token; later changes of a group see the group's earlier ones.
//
// With Config.Workers > 1, changes are spread over workers by object (UID,
// or Name when there is none), so one object's changes are processed in
// stream order; the token is the highest position below which every change
// is done.
//
// # Errors
//
// A failed change (store, Get, handler error or panic, malformed change) goes
// through Config.ErrorPolicy: stop (the default), ignore, set aside for the
// next run (with an attempt count and an optional limit), or stop after N
// errors. A change set aside holds back the later changes of its object:
// they are set aside behind it and retried after it, so an object's changes
// are never applied out of order. Fetch and token-store failures stop the
// run. The delete guard stops a run whose fetch would apply more deletes
// than allowed, until an operator overrides it.
//
// # Runs, schedules, operators
//
// Runs of a Task never overlap (ErrRunning). Task.Start runs it on a
// schedule shared with the refresh task (first run at once, then on a fixed
// grid measured with the configured clock, overlapped planned times skipped;
// Stop, Suspend, Resume, RunNow). Config.Lease makes a task
// single-runner across processes: a run holds a lease and moves the token
// only with writes fenced by it. Operators read the token (Task.Token),
// reset it (Task.ResetToken, Task.ResetTokenToLatest) and see or drop the
// set-aside changes (Task.SetAsideChanges, Task.DropSetAside).
package livesync
