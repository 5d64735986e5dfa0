// Package umbra is a library for identity consistency engines: the
// machinery an identity-management product needs to keep its own records of
// accounts ("shadows") consistent with the real accounts on directories,
// databases, SaaS applications and manual (ticket) systems — when those
// systems are slow, down, changed behind its back, or fail half-way through a
// change.
//
// This root package holds only this overview. The work is done by the
// packages below, each named for what it owns:
//
//   - connector: the resource SPI — object classes, identifiers, attributes,
//     deltas and their merge, change events and tokens, capabilities, and
//     the error categories every engine acts on. Reference connectors live
//     in its sub-packages: memconn (in-memory, with fault injection), ldap
//     (OpenLDAP, live sync from the access log or modifyTimestamp), manual
//     (tickets a person works from).
//   - shadow: the shadow model, pending operations and the Store SPI with an
//     indexable query vocabulary. Stores: shadow/memstore (in memory) and
//     shadow/sqlstore (SQLite in a file, PostgreSQL for several processes).
//     Every store passes shadow/storetest.
//   - consistency: the provisioning engine — Add, Modify, Delete and Get of
//     shadows with postponement, retries, discovery, resource availability,
//     operation grouping and the one-shadow refresh.
//   - refresh: the task that refreshes shadows with due work, bounded and
//     scheduled.
//   - propagation: the task that executes grouped operations, merged, one
//     call per shadow.
//   - livesync: change streams with resumable tokens (precise or not), batch
//     size, dry run, error policies, parallel workers.
//   - compensation: all-or-nothing synchronization of a managed-object change
//     to ordered targets, reverted on failure.
//
// # Concepts
//
// A resource object has a primary identifier (UID: stable, assigned by the
// resource) and a secondary one (Name: unique, may change, such as a DN).
// Its shadow caches its attributes and carries pending operations: work that
// could not finish yet, because the resource was down (retry), because
// grouping collects changes into one (grouped), or because the resource
// works slowly (async). The error category of every connector failure
// decides what the engine does: postpone and retry, read the resource first
// when the outcome is unknown, discover what is really there, or fail.
//
// # Wiring
//
// A host builds a store, a connector per resource and the engine, then the
// tasks it wants:
//
//	store := memstore.New(memstore.Options{})
//	ldapConn, _ := ldap.New(ldapConfig)
//	engine, _ := consistency.New(consistency.Config{
//		Store:     store,
//		Resources: []consistency.Resource{{ID: "ldap", Connector: ldapConn}},
//	})
//	out, err := engine.Add(ctx, consistency.AddRequest{
//		ResourceID: "ldap", Class: "inetOrgPerson", Name: dn, Attributes: attrs,
//	})
//	// out.Status is Done, or Pending when the directory is down: a
//	// refresh task (package refresh) retries it when it is back.
//
// The README's wiring example is kept compiling in example_test.go.
package umbra
