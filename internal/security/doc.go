// Package security holds cross-cutting security tests: a full scenario
// (LDAP connector, PostgreSQL store, the consistency engine, live sync,
// refresh and propagation) run with known passwords, asserting that no log
// line, error or printed configuration ever shows them. It has no API.
package security
