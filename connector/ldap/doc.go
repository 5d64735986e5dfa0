// Package ldap is an umbra connector for LDAP directories, built on
// github.com/go-ldap/ldap/v3 and tested against OpenLDAP slapd 2.5.
//
// A Connector implements connector.Connector, connector.Searcher,
// connector.LiveSyncer and connector.Tester. Each configured object class
// (Config.Classes) lives below a base DN and is recognised by its LDAP
// object classes.
//
// # Identifiers
//
// The primary identifier (UID) is an attribute assigned by the server,
// entryUUID by default (ClassConfig.UIDAttribute). The secondary identifier
// (Name) is the entry's DN, as the server spells it. Add builds the DN from
// the naming attribute's single value (ClassConfig.NamingAttribute), escaped
// as RFC 4514 requires (and '=' and control bytes too), so values holding
// ,=+<>#;"\ leading or trailing spaces, or NUL, stay one RDN value. A value
// that is not valid UTF-8 cannot be part of a DN and fails with
// CategorySchema; other attributes are checked by the server (invalid UTF-8
// in a directory string fails with CategorySchema, result 21). Filters
// built from values are escaped with ldap.EscapeFilter.
//
// Get, Modify and Delete find an object by UID (a search of the base DN)
// when the UID is set, else by DN. A Modify that replaces the naming
// attribute renames the entry (ModifyDN) before applying the other changes,
// and reports the new DN; the other changes go out in one modify request
// with the permissive modify control, so that value adds and deletes have
// the set semantics of the connector SPI.
//
// # Connections
//
// Single operations share up to Config.PoolSize bound connections; a Search
// holds one more of its own for its duration, so that its callback may call
// the connector. A connection that fails is closed together with the idle
// ones. go-ldap requests take no context, so each request runs with
// Config.OpTimeout and its connection is closed when the context ends.
//
// # Errors
//
// Failures carry a connector.Category:
//
//   - not sent: connection refused, DNS, TLS handshake, StartTLS, the
//     context ending before the request left, LDAP 52 (unavailable)
//   - outcome unknown: a timeout or a lost connection after the request was
//     written, the context ending during a write
//   - throttled: LDAP 51 (busy)
//   - already exists: LDAP 68 (connector.Error.Existing names the entry)
//   - not found: LDAP 32
//   - schema: LDAP 16, 17, 18, 20, 21, 34, 64, 65, 67, 69, an unknown object
//     class, a malformed token, a Name outside the class's base DN
//   - configuration: LDAP 49 and other bind failures, a missing base DN, a
//     server limit (LDAP 3, 4, 11) that cuts a search short: an incomplete
//     listing never passes for a complete one
//   - permission: LDAP 50
//   - policy: LDAP 19, 53, 66
//   - generic: anything else
//
// The bind password is never printed: Config's String, GoString, Format
// and LogValue redact it, and connector errors never contain it.
//
// # Live sync
//
// Config.LiveSync chooses one of two strategies.
//
// LiveSyncAccessLog reads the records the OpenLDAP accesslog overlay writes
// to its log database (Config.AccessLogBase, default cn=accesslog):
// successful adds, modifies, renames (modrdn) and deletes whose reqDN (or
// reqNewDN) lies below the class's base DN. Tokens are precise, one per
// change: "accesslog:" followed by the log record's entryCSN, for example
//
//	accesslog:20261122041801.003230Z#000000#000#000000
//
// or "accesslog:0" for the position before the first record. Any other
// text is refused with CategorySchema. Records are ordered by entryCSN, not
// by reqStart: with concurrent writers slapd commits log records out of
// reqStart order (reqStart is taken when a request arrives), so a reqStart
// cursor skips changes. The accesslog overlay serializes the writes it logs
// and stamps each record with the write's CSN, so entryCSN follows commit
// order (measured: no inversion in tens of thousands of concurrent writes,
// against about 5% for reqStart). As a second guard, a fetch stops at the
// log database's contextCSN, which its syncprov overlay advances only past
// committed records, so a record still being written is left for the next
// fetch instead of being skipped. Deletes are reported by DN (the shadow is
// found by Name) with the entryUUID from reqEntryUUID or reqOld; renames
// carry the new DN in ID.Name and the old one in OldName; an entry moved out
// of the base DN is reported deleted, one moved in created. Creates carry
// the added attributes; modifies carry none (the engine reads the object).
// Adds and deletes of other object classes below the same base DN are left
// out; modifies and renames are attributed by DN only, so give classes
// disjoint base DNs.
//
// The server needs, besides the accesslog overlay on the main database
// (logops writes, logsuccess TRUE, and logold (objectClass=*) for the
// entryUUID of deletes on servers without reqEntryUUID):
//
//   - syncprov on the log database (for contextCSN), and an index on
//     entryCSN, reqDN and reqResult there;
//   - a raised olcDbMaxSize on the log database. With the mdb default of
//     10 MiB, slapd silently stops logging after a few thousand records
//     (MDB_MAP_FULL in its log) while the writes themselves still succeed:
//     live sync then misses every later change. The log grows faster than
//     the main database (measured ~17 MB for 10k adds); size it for the
//     purge interval (olcAccessLogPurge);
//   - read access to the log database for Config.BindDN, without size limit.
//
// A fetch reads the entryCSNs of the pending records in time slices after
// the token (1 s, doubling) until it has more than max of them or reaches
// the watermark, then the full records of the max lowest: its cost follows
// max, not the length of the backlog.
// Records older than the log's purge age (olcAccessLogPurge) are gone: a
// task that stood still longer than that misses changes without notice, so
// reconcile after a long stop.
//
// LiveSyncModifyTimestamp works on any directory: it searches the class's
// objects with (modifyTimestamp>=T) and reports them as
// ChangeCreateOrModify with their attributes. Tokens are imprecise (one per
// fetch): "modifyTimestamp:" followed by a whole-second UTC time, then
// optionally ";" and the base64url (RFC 4648, no padding) of up to 64
// 8-byte digests, for example
//
//	modifyTimestamp:20261122041800Z
//	modifyTimestamp:20261122041800Z;2yD5PIy47ng
//
// Any other text is refused with CategorySchema. A fetch reads, and holds
// in memory, every object changed since the token's second (from the empty
// token: every object of the class), since the server cannot sort them.
// modifyTimestamp has
// whole-second granularity and more writes may land in the last second a
// fetch read, so the next fetch reads that second again (at least once). The
// digests (SHA-256 of an object's UID, DN, modifyTimestamp and attributes,
// first 8 bytes) name the objects of that second already delivered in their
// current state: those are skipped, every other object of the second is
// delivered again. A second with more than 64 objects carries no digests
// and is delivered again whole; handlers must be idempotent. A fetch may
// exceed its max to deliver whole seconds (the first new second always
// comes whole, so that every fetch makes progress). Deletes are not visible
// to this strategy: reconciliation finds them. LatestToken reads the newest
// timestamp from the server (the base DN entry and the class's objects,
// one search over the class), never the local clock.
package ldap
