// Package connector is the resource SPI of umbra: what a connector to a
// directory, a database, a SaaS application or a manual (ticket) system must
// provide, and the vocabulary every other package speaks about resource
// objects.
//
// Most code does not call connectors directly; it uses the engines
// (consistency, livesync, ...), which call them. This package is for people
// writing a connector, and for the engines.
//
// # The model
//
// A resource object has an ObjectClass, Identifiers (a stable primary UID
// assigned by the resource and a unique, changeable secondary Name) and
// multi-valued Attributes. Changes to objects are Deltas: add with
// attributes, modify with AttributeDeltas (add, delete or replace values),
// delete. Merge folds the pending deltas of one object into one; Apply
// executes a delta against an in-memory object state, which is how tests and
// in-memory resources define what a delta means.
//
// # Capabilities
//
// The required interface, Connector, is small: Add, Modify, Delete, Get.
// Everything else is optional and discovered by type assertion, as
// database/sql/driver does:
//
//   - Searcher: paged search, for discovery and reconciliation
//   - LiveSyncer: change streams with tokens, precise or not
//   - AsyncOperator: operations that finish later, with a status check
//   - Tester: a cheap probe of the resource
//
// # Errors
//
// Every connector error carries a Category (communication not sent,
// communication with unknown outcome, throttled, already exists, not found,
// schema, configuration, policy, permission, generic). The engines act on the
// category alone: see Category and Classify. Test with errors.Is against the
// sentinels (ErrNotFound, ErrCommunication, ...).
//
// # Implementations and the conformance suite
//
// Reference connectors live in sub-packages: memconn (an in-memory resource
// with fault injection), ldap, sqltable and manual. Every connector runs the
// suite in connectortest.
package connector
