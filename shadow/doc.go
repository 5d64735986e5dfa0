// Package shadow holds the shadow model and the Store SPI.
//
// A Shadow is the local record of one resource object: its identifiers, a
// cache of its attributes, whether it exists and whether it is dead, how it
// came to be (Origin), and its PendingOperations — the unfinished work the
// consistency engine, propagation and refresh carry out. Lifecycle states
// (proposed, being created, live, being deleted, dead) are derived by
// Shadow.State, never stored.
//
// Store is an SPI with a small query vocabulary (Query) that a SQL database
// can serve from indexes: resource, class, identifier, unfinished pending
// operations of a type, oldest pending before, due by, dead before. Updates
// carry the expected Version and fail with ErrConflict when it moved.
// Optional interfaces add what a store shared by several processes offers:
// Batcher (atomic group writes), Claimer (work claims) and Leaser (leases for
// single-runner tasks).
//
// Implementations: memstore (in memory) and sqlstore (SQLite and
// PostgreSQL). Each passes the conformance suite in storetest.
package shadow
