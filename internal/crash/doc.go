// Package crash holds umbra's crash tests; it has no code of its own.
//
// The tests start the test binary again as a child process that runs the
// refresh or propagation task over a durable store (a SQLite file, or a
// PostgreSQL schema) against a durable resource (a connector/sqltable table
// in the same kind of database), and kill it with SIGKILL: at random moments
// chosen by the parent (seeded, the seed logged), or from inside the child
// right after the k-th write reached the resource, before the engine could
// record it. Children are started again until one runs to quiescence. The
// parent then checks the resource and the store against a model of the
// seeded operations:
//
//   - no change lost: every object and attribute on the resource equals the
//     model, and no pending operation is left or given up;
//   - no operation executed twice with a visible effect: a trigger logs
//     every committed insert, update and delete in the resource's own
//     database (in the same transaction), so each add and delete must
//     appear exactly once and every modify at least once; a repeated modify
//     is counted and is harmless because every modify replaces values;
//   - an add whose outcome a kill left unknown is settled by reading the
//     resource by name before any new attempt: no add ever collides with the
//     object an earlier attempt made.
//
// A second group of tests puts a TCP proxy (testsvc.Proxy) between the
// engines and PostgreSQL and loses the connection in the middle of a run:
// cut right after a write reached the resource and kept out for a while
// (refresh), cut at random moments on the store's and the resource's
// connections (refresh, propagation), or cut exactly when the server has
// executed a statement and before its answer arrives (the store's save of an
// outcome, a live-sync group commit, sqltable's commit and insert). The
// engines must report a store error (not a panic, not success), send nothing
// they could not record first, lose nothing, and carry on, on the same
// database/sql pool, when the connection comes back.
//
// The normal suite kills a few children per crash test; UMBRA_FULL=1 kills
// 25 per test (100 over the four crash tests; live sync's own crash test
// adds 20) and runs the random cuts longer. A failing run prints its seed;
// UMBRA_CRASH_SEED=<seed> replays the same kill and cut times.
package crash
