package ldap

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

// Token prefixes: a token names its strategy, so that a token of the other
// strategy is refused instead of misread.
const (
	accessLogPrefix       = "accesslog:"
	modifyTimestampPrefix = "modifyTimestamp:"
	// accessLogStart is the accesslog token before the first record.
	accessLogStart = "0"
)

var (
	// csnRE matches an OpenLDAP change sequence number:
	// time#count#sid#mod, e.g. 20261122041801.003230Z#000000#000#000000.
	// The hex digits are lower case, as slapd writes them: CSNs are
	// compared as strings, and an upper-case digit would sort after every
	// lower-case one.
	csnRE = regexp.MustCompile(`^[0-9]{14}\.[0-9]{6}Z#[0-9a-f]{6}#[0-9a-f]{3}#[0-9a-f]{6}$`)
	// timestampRE matches a whole-second generalized time in UTC.
	timestampRE = regexp.MustCompile(`^[0-9]{14}Z$`)
)

// PreciseTokens reports true for LiveSyncAccessLog (every change carries
// the CSN of its log record) and false otherwise.
func (c *Connector) PreciseTokens() bool { return c.cfg.LiveSync == LiveSyncAccessLog }

// parseToken checks tok against the configured strategy and returns its
// value ("" for the empty token).
func (c *Connector) parseToken(op string, tok connector.Token) (string, error) {
	if c.cfg.LiveSync == LiveSyncNone {
		return "", newError(connector.CategoryConfiguration, op, "live sync is not configured (Config.LiveSync is empty)")
	}
	if tok == "" {
		return "", nil
	}
	s := string(tok)
	switch c.cfg.LiveSync {
	case LiveSyncAccessLog:
		v, ok := strings.CutPrefix(s, accessLogPrefix)
		if _, valid := csnTime(v); ok && (v == accessLogStart || valid) {
			return v, nil
		}
		return "", newError(connector.CategorySchema, op,
			"malformed token %q: want %q followed by an entryCSN (or %q)", s, accessLogPrefix, accessLogStart)
	case LiveSyncModifyTimestamp:
		v, ok := strings.CutPrefix(s, modifyTimestampPrefix)
		if _, valid := parseTSToken(v); ok && valid {
			return v, nil
		}
		return "", newError(connector.CategorySchema, op,
			"malformed token %q: want %q followed by a time YYYYMMDDHHMMSSZ, optionally \";\" and base64url digests", s, modifyTimestampPrefix)
	}
	return "", newError(connector.CategoryConfiguration, op, "live sync is not configured (Config.LiveSync is empty)")
}

// LatestToken returns the position at the end of the change stream now.
//
// LiveSyncAccessLog: the contextCSN of the access log database (every
// record up to it is committed), or the start of the log when it has none.
// LiveSyncModifyTimestamp: the newest modifyTimestamp among the base DN
// entry and the objects of the class, read from the server so that client
// clock skew cannot lose changes.
func (c *Connector) LatestToken(ctx context.Context, oc connector.ObjectClass) (connector.Token, error) {
	const op = "latest token"
	cl, err := c.class(op, oc)
	if err != nil {
		return "", err
	}
	if _, err := c.parseToken(op, ""); err != nil {
		return "", err
	}
	var tok connector.Token
	switch c.cfg.LiveSync {
	case LiveSyncAccessLog:
		err = c.do(ctx, op, func(conn *goldap.Conn) error {
			w, err := c.watermark(conn, op)
			if err != nil {
				return err
			}
			if w == "" {
				w, err = c.newestRecord(conn)
				if err != nil {
					return err
				}
			}
			if w == "" {
				w = accessLogStart
			}
			tok = connector.Token(accessLogPrefix + w)
			return nil
		})
	case LiveSyncModifyTimestamp:
		var ts string
		ts, err = c.newestTimestamp(ctx, cl)
		tok = connector.Token(modifyTimestampPrefix + ts)
	default:
		err = newError(connector.CategoryConfiguration, op, "live sync is not configured (Config.LiveSync is empty)")
	}
	if err != nil {
		return "", err
	}
	return tok, nil
}

// FetchChanges returns up to max changes of class after from (max ≤ 0:
// LiveSyncMaxDefault). See the package documentation for each strategy's
// token and guarantees.
func (c *Connector) FetchChanges(ctx context.Context, oc connector.ObjectClass, from connector.Token, max int) (connector.ChangeBatch, error) {
	const op = "fetch changes"
	cl, err := c.class(op, oc)
	if err != nil {
		return connector.ChangeBatch{}, err
	}
	pos, err := c.parseToken(op, from)
	if err != nil {
		return connector.ChangeBatch{}, err
	}
	if max <= 0 {
		max = LiveSyncMaxDefault
	}
	if c.cfg.LiveSync == LiveSyncAccessLog {
		return c.fetchAccessLog(ctx, cl, from, pos, max)
	}
	return c.fetchModifyTimestamp(ctx, cl, from, pos, max)
}

// ---- accesslog ----

// logAttrs are the attributes of an access log record the connector reads.
var logAttrs = []string{"entryCSN", "reqType", "reqDN", "reqNewDN", "reqNewRDN", "reqNewSuperior",
	"reqEntryUUID", "reqMod", "reqOld"}

// watermark returns the highest contextCSN of the access log database: the
// syncprov overlay on that database advances it only when every record
// with a lower CSN has committed, so nothing at or below it can appear
// later. "" when the database has none (no syncprov there, or no record
// yet).
func (c *Connector) watermark(conn *goldap.Conn, op string) (string, error) {
	res, err := conn.Search(goldap.NewSearchRequest(c.cfg.AccessLogBase, goldap.ScopeBaseObject, goldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{"contextCSN"}, nil))
	if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
		return "", newError(connector.CategoryConfiguration, op, "access log base %q does not exist", c.cfg.AccessLogBase)
	}
	if err != nil {
		return "", err
	}
	w := ""
	for _, e := range res.Entries {
		for _, v := range e.GetEqualFoldAttributeValues("contextCSN") {
			if csnRE.MatchString(v) && v > w {
				w = v
			}
		}
	}
	if w == "" {
		c.warnOnce.Do(func() {
			c.log.Warn("ldap: access log database has no contextCSN (is syncprov configured on it?); reading without a commit watermark",
				"base", c.cfg.AccessLogBase)
		})
	}
	return w, nil
}

// newestRecord returns the highest entryCSN in the access log, or "".
func (c *Connector) newestRecord(conn *goldap.Conn) (string, error) {
	res, err := conn.SearchWithPaging(goldap.NewSearchRequest(c.cfg.AccessLogBase, goldap.ScopeWholeSubtree,
		goldap.NeverDerefAliases, 0, 0, false, "(objectClass=auditWriteObject)", []string{"entryCSN"}, nil), uint32(c.cfg.PageSize))
	if err != nil {
		return "", c.limitError("latest token", c.cfg.AccessLogBase, err)
	}
	newest := ""
	for _, e := range res.Entries {
		if v := e.GetEqualFoldAttributeValue("entryCSN"); v > newest {
			newest = v
		}
	}
	return newest, nil
}

// logFilter selects the successful write records about entries of cl,
// optionally from CSN lo up to CSN hi (inclusive).
func (c *Connector) logFilter(cl *class, lo, hi string) string {
	base := goldap.EscapeFilter(cl.BaseDN)
	f := "(&(objectClass=auditWriteObject)(reqResult=0)(|(reqDN:dnSubtreeMatch:=" + base + ")(reqNewDN:dnSubtreeMatch:=" + base + "))"
	if lo != "" && lo != accessLogStart {
		f += "(entryCSN>=" + lo + ")"
	}
	if hi != "" {
		f += "(entryCSN<=" + hi + ")"
	}
	return f + ")"
}

// fetchAccessLog reads the records after CSN pos in two steps: the CSNs of
// every candidate record up to the watermark (small), then the full records
// of the max lowest. Ordering by the record's entryCSN and stopping at the
// watermark is what makes the cursor safe with concurrent writers: records
// are committed out of reqStart order, but never below the watermark after
// it was read.
func (c *Connector) fetchAccessLog(ctx context.Context, cl *class, from connector.Token, pos string, max int) (connector.ChangeBatch, error) {
	const op = "fetch changes"
	batch := connector.ChangeBatch{Token: from}
	err := c.do(ctx, op, func(conn *goldap.Conn) error {
		w, err := c.watermark(conn, op)
		if err != nil {
			return err
		}
		csns, err := c.pendingCSNs(conn, cl, pos, w, max)
		if err != nil {
			return err
		}
		if len(csns) == 0 {
			if w > pos {
				batch.Token = connector.Token(accessLogPrefix + w)
			} else if from == "" {
				batch.Token = connector.Token(accessLogPrefix + accessLogStart)
			}
			return nil
		}
		last := csns[len(csns)-1]
		if len(csns) > max {
			csns, last, batch.More = csns[:max], csns[max-1], true
		}
		res, err := conn.SearchWithPaging(goldap.NewSearchRequest(c.cfg.AccessLogBase, goldap.ScopeWholeSubtree,
			goldap.NeverDerefAliases, 0, 0, false, c.logFilter(cl, csns[0], last), logAttrs, nil), uint32(c.cfg.PageSize))
		if err != nil {
			return c.limitError(op, c.cfg.AccessLogBase, err)
		}
		recs := res.Entries
		sort.Slice(recs, func(i, j int) bool {
			return recs[i].GetEqualFoldAttributeValue("entryCSN") < recs[j].GetEqualFoldAttributeValue("entryCSN")
		})
		seen := map[string]bool{}
		for _, e := range recs {
			csn := e.GetEqualFoldAttributeValue("entryCSN")
			if csn <= pos || csn > last || seen[csn] {
				continue
			}
			seen[csn] = true
			if ch, ok := c.recordChange(cl, e); ok {
				ch.Token = connector.Token(accessLogPrefix + csn)
				batch.Changes = append(batch.Changes, ch)
			}
		}
		if n := len(batch.Changes); n > 0 {
			// The batch ends at its last change. Records examined after
			// it belong to other classes; the next fetch passes them.
			batch.Token = batch.Changes[n-1].Token
			batch.More = batch.More || batch.Token != connector.Token(accessLogPrefix+last)
			return nil
		}
		batch.Token = connector.Token(accessLogPrefix + last)
		if !batch.More && w > last {
			batch.Token = connector.Token(accessLogPrefix + w)
		}
		return nil
	})
	if err != nil {
		return connector.ChangeBatch{}, err
	}
	return batch, nil
}

// pendingCSNs returns, sorted, the entryCSNs of the class's records after
// pos up to the watermark w: all of them, or at least the max+1 lowest. It
// reads the log in time slices after pos (1 s, then doubling), so that a
// fetch reads about max records however long the backlog is. Without a CSN
// position or a watermark it reads everything in one search.
func (c *Connector) pendingCSNs(conn *goldap.Conn, cl *class, pos, w string, max int) ([]string, error) {
	const op = "fetch changes"
	var out []string
	collect := func(lo, hi string) error {
		res, err := conn.SearchWithPaging(goldap.NewSearchRequest(c.cfg.AccessLogBase, goldap.ScopeWholeSubtree,
			goldap.NeverDerefAliases, 0, 0, false, c.logFilter(cl, lo, hi), []string{"entryCSN"}, nil), uint32(c.cfg.PageSize))
		if err != nil {
			return c.limitError(op, c.cfg.AccessLogBase, err)
		}
		for _, e := range res.Entries {
			if v := e.GetEqualFoldAttributeValue("entryCSN"); v > lo && v > pos && (hi == "" || v <= hi) {
				out = append(out, v)
			}
		}
		return nil
	}
	start, ok := csnTime(pos)
	if !ok || w == "" {
		if err := collect(pos, w); err != nil {
			return nil, err
		}
	} else {
		lo := pos
		for step := time.Second; ; step *= 2 {
			hi := csnCeil(start.Add(step))
			end := hi >= w
			if end {
				hi = w
			}
			if err := collect(lo, hi); err != nil {
				return nil, err
			}
			if end || len(out) > max {
				break
			}
			lo = hi
		}
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// csnTime returns the time of a CSN; false when csn is not a CSN or its
// time does not exist (month 13, February 30).
func csnTime(csn string) (time.Time, bool) {
	if !csnRE.MatchString(csn) {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102150405.000000Z", csn[:22])
	return t, err == nil
}

// csnCeil returns the highest CSN of the microsecond of t.
func csnCeil(t time.Time) string {
	return t.UTC().Format("20060102150405.000000") + "Z#ffffff#fff#ffffff"
}

// logValue is one "attr:op value" of reqMod or "attr: value" of reqOld.
// hasValue is false for a reqMod without values ("attr:op").
type logValue struct {
	attr, op, value string
	hasValue        bool
}

// parseReqMod parses a reqMod value: "name:+ value" (op +, -, =, #), or
// "name:op" for a change without values. Anything else is refused.
func parseReqMod(s string) (logValue, bool) {
	i := strings.IndexByte(s, ':')
	if i <= 0 || i+1 >= len(s) || !strings.ContainsRune("+-=#", rune(s[i+1])) {
		return logValue{}, false
	}
	v := logValue{attr: s[:i], op: s[i+1 : i+2]}
	switch {
	case len(s) == i+2:
	case s[i+2] == ' ':
		v.value, v.hasValue = s[i+3:], true
	default:
		return logValue{}, false
	}
	return v, true
}

// parseReqOld parses a reqOld value: "name: value".
func parseReqOld(s string) (logValue, bool) {
	i := strings.Index(s, ": ")
	if i <= 0 {
		return logValue{}, false
	}
	return logValue{attr: s[:i], value: s[i+2:], hasValue: true}, true
}

func logValues(e *goldap.Entry, attr string, parse func(string) (logValue, bool)) []logValue {
	var out []logValue
	for _, s := range e.GetEqualFoldAttributeValues(attr) {
		if v, ok := parse(s); ok {
			out = append(out, v)
		}
	}
	return out
}

func valuesOf(vs []logValue, attr string) []string {
	var out []string
	for _, v := range vs {
		if v.hasValue && strings.EqualFold(v.attr, attr) {
			out = append(out, v.value)
		}
	}
	return out
}

// hasClasses reports whether the objectClass values ocs include every
// object class of cl.
func (cl *class) hasClasses(ocs []string) bool {
	for _, want := range cl.LDAPObjectClasses {
		if !slices.ContainsFunc(ocs, func(oc string) bool { return strings.EqualFold(oc, want) }) {
			return false
		}
	}
	return true
}

// inScope reports whether the DN s names an object of cl's base and scope.
func (cl *class) inScope(s string) bool {
	dn, err := goldap.ParseDN(s)
	return err == nil && under(cl.base, dn, cl.Scope == ScopeOneLevel) && len(dn.RDNs) > len(cl.base.RDNs)
}

// recordChange maps an access log record to a change of cl. ok is false
// for a record about another class or outside the class's scope.
func (c *Connector) recordChange(cl *class, e *goldap.Entry) (connector.Change, bool) {
	dn := e.GetEqualFoldAttributeValue("reqDN")
	mods := logValues(e, "reqMod", parseReqMod)
	old := logValues(e, "reqOld", parseReqOld)
	uid := ""
	if strings.EqualFold(cl.UIDAttribute, "entryUUID") {
		uid = e.GetEqualFoldAttributeValue("reqEntryUUID")
	}
	if uid == "" {
		if v := valuesOf(mods, cl.UIDAttribute); len(v) > 0 {
			uid = v[0]
		} else if v := valuesOf(old, cl.UIDAttribute); len(v) > 0 {
			uid = v[0]
		}
	}
	ch := connector.Change{Class: cl.name, ID: connector.Identifiers{UID: uid, Name: dn}}
	typ := e.GetEqualFoldAttributeValue("reqType")
	switch {
	case typ == "add":
		if !cl.inScope(dn) || !cl.hasClasses(valuesOf(mods, "objectClass")) {
			return ch, false
		}
		ch.Type = connector.ChangeCreate
		ch.Object = connector.Attributes{}
		for _, m := range mods {
			if m.op != "+" || !m.hasValue || (operational[strings.ToLower(m.attr)] && !cl.explicit[strings.ToLower(m.attr)]) {
				continue
			}
			if len(cl.Attributes) > 0 && !cl.explicit[strings.ToLower(m.attr)] && !cl.explicit["*"] {
				continue
			}
			ch.Object[m.attr] = append(ch.Object[m.attr], m.value)
		}
	case typ == "delete":
		if !cl.inScope(dn) {
			return ch, false
		}
		if ocs := valuesOf(old, "objectClass"); len(ocs) > 0 && !cl.hasClasses(ocs) {
			return ch, false
		}
		ch.Type = connector.ChangeDelete
	case typ == "modrdn":
		// reqNewDN is normalized (lower case); build the new DN from the
		// pretty reqNewRDN and the old parent (or the new superior).
		newDN := e.GetEqualFoldAttributeValue("reqNewDN")
		if rdn := e.GetEqualFoldAttributeValue("reqNewRDN"); rdn != "" {
			parent := e.GetEqualFoldAttributeValue("reqNewSuperior")
			if parent == "" {
				_, parent = splitRDN(dn)
			}
			newDN = rdn + "," + parent
		}
		was, is := cl.inScope(dn), cl.inScope(newDN)
		switch {
		case was && is:
			ch.Type, ch.ID.Name, ch.OldName = connector.ChangeModify, newDN, dn
		case was: // moved out of the class's scope: gone for this class
			ch.Type = connector.ChangeDelete
		case is: // moved in
			ch.Type, ch.ID.Name = connector.ChangeCreate, newDN
		default:
			return ch, false
		}
	case typ == "modify" || strings.HasPrefix(typ, "extended"):
		if !cl.inScope(dn) {
			return ch, false
		}
		ch.Type = connector.ChangeModify
	default:
		c.log.Debug("ldap: skipping access log record of unknown type", "type", typ, "dn", e.DN)
		return ch, false
	}
	return ch, true
}

// ---- modifyTimestamp ----

// maxBoundaryDigests bounds how many object digests a modifyTimestamp token
// carries. A boundary second with more objects is delivered again whole.
const maxBoundaryDigests = 64

// tsToken is a parsed modifyTimestamp token: a whole second and the digests
// of the objects of that second already delivered in their current state.
type tsToken struct {
	second  string
	digests map[[8]byte]bool
}

func (t tsToken) String() string {
	if t.second == "" {
		return ""
	}
	s := modifyTimestampPrefix + t.second
	if len(t.digests) > 0 && len(t.digests) <= maxBoundaryDigests {
		keys := make([][8]byte, 0, len(t.digests))
		for k := range t.digests {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return string(keys[i][:]) < string(keys[j][:]) })
		buf := make([]byte, 0, 8*len(keys))
		for _, k := range keys {
			buf = append(buf, k[:]...)
		}
		s += ";" + base64.RawURLEncoding.EncodeToString(buf)
	}
	return s
}

// parseTSToken parses the value of a modifyTimestamp token (after the
// prefix): YYYYMMDDHHMMSSZ, optionally ";" and base64url (no padding) of
// 8-byte digests.
func parseTSToken(v string) (tsToken, bool) {
	sec, list, hasList := strings.Cut(v, ";")
	if !timestampRE.MatchString(sec) {
		return tsToken{}, false
	}
	if _, err := time.Parse("20060102150405Z", sec); err != nil {
		return tsToken{}, false // no such time (month 13, February 30)
	}
	t := tsToken{second: sec, digests: map[[8]byte]bool{}}
	if !hasList {
		return t, true
	}
	raw, err := base64.RawURLEncoding.DecodeString(list)
	if err != nil || len(raw) == 0 || len(raw)%8 != 0 || len(raw)/8 > maxBoundaryDigests {
		return tsToken{}, false
	}
	for i := 0; i < len(raw); i += 8 {
		t.digests[[8]byte(raw[i:i+8])] = true
	}
	return t, true
}

// digest identifies an object's state: its identifiers, modifyTimestamp and
// attributes (first 8 bytes of SHA-256).
func digest(id connector.Identifiers, modifyTimestamp string, attrs connector.Attributes) [8]byte {
	h := sha256.New()
	io.WriteString(h, id.Name)
	h.Write([]byte{0})
	io.WriteString(h, id.UID)
	h.Write([]byte{0})
	io.WriteString(h, modifyTimestamp)
	norm := attrs.Normalize()
	for _, name := range norm.Names() {
		h.Write([]byte{1})
		io.WriteString(h, strings.ToLower(name))
		for _, v := range norm[name] {
			h.Write([]byte{0})
			io.WriteString(h, v)
		}
	}
	var out [8]byte
	copy(out[:], h.Sum(nil))
	return out
}

// tsEntry is an object with its modifyTimestamp and its whole second.
type tsEntry struct {
	ts     string
	digest [8]byte
	obj    connector.Object
}

// secondOf cuts a generalized time (YYYYMMDDHHMMSS[.frac]Z) to whole
// seconds; ok is false for anything else (including a time zone offset).
func secondOf(v string) (string, bool) {
	if len(v) < 15 || !strings.HasSuffix(v, "Z") {
		return "", false
	}
	s := v[:14] + "Z"
	return s, timestampRE.MatchString(s)
}

// readTimestamped reads the objects of cl matching filter with their
// timestamps, sorted by second and DN.
func (c *Connector) readTimestamped(ctx context.Context, conn *goldap.Conn, cl *class, filter string) ([]tsEntry, error) {
	attrs := append(slices.Clone(cl.attrs), "modifyTimestamp", "createTimestamp")
	var entries []tsEntry
	err := c.pagedSearch(ctx, conn, cl, filter, attrs, func(e *goldap.Entry) error {
		mt := e.GetEqualFoldAttributeValue("modifyTimestamp")
		if mt == "" {
			mt = e.GetEqualFoldAttributeValue("createTimestamp")
		}
		ts, ok := secondOf(mt)
		if !ok {
			c.log.Warn("ldap: entry without a usable modifyTimestamp skipped", "dn", e.DN)
			return nil
		}
		obj := cl.object(e)
		entries = append(entries, tsEntry{ts: ts, digest: digest(obj.ID, mt, obj.Attributes), obj: obj})
		return nil
	})
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].ts != entries[j].ts {
			return entries[i].ts < entries[j].ts
		}
		return entries[i].obj.ID.Name < entries[j].obj.ID.Name
	})
	return entries, err
}

// latestTimestampToken returns the end of the modifyTimestamp stream: the
// newest second among the base DN entry and the objects of cl, with the
// digests of the objects of that second.
func (c *Connector) latestTimestampToken(ctx context.Context, conn *goldap.Conn, cl *class) (tsToken, error) {
	const op = "latest token"
	res, err := conn.Search(goldap.NewSearchRequest(cl.BaseDN, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"modifyTimestamp", "createTimestamp"}, nil))
	if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
		return tsToken{}, newError(connector.CategoryConfiguration, op, "base DN %q of class %q does not exist", cl.BaseDN, cl.name)
	}
	if err != nil {
		return tsToken{}, err
	}
	tok := tsToken{digests: map[[8]byte]bool{}}
	for _, e := range res.Entries {
		for _, a := range []string{"modifyTimestamp", "createTimestamp"} {
			if s, ok := secondOf(e.GetEqualFoldAttributeValue(a)); ok && s > tok.second {
				tok.second = s
			}
		}
	}
	entries, err := c.readTimestamped(ctx, conn, cl, cl.filter)
	if err != nil {
		return tsToken{}, err
	}
	if n := len(entries); n > 0 && entries[n-1].ts >= tok.second {
		tok.second = entries[n-1].ts
		for i := n - 1; i >= 0 && entries[i].ts == tok.second; i-- {
			tok.digests[entries[i].digest] = true
		}
	}
	if tok.second == "" {
		return tsToken{}, newError(connector.CategoryGeneric, op, "base DN %q has no modifyTimestamp", cl.BaseDN)
	}
	return tok, nil
}

// newestTimestamp is latestTimestampToken on a connection of its own.
func (c *Connector) newestTimestamp(ctx context.Context, cl *class) (string, error) {
	var tok tsToken
	err := c.run(ctx, "latest token", false, func(conn *goldap.Conn) error {
		var err error
		tok, err = c.latestTimestampToken(ctx, conn, cl)
		return err
	})
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(tok.String(), modifyTimestampPrefix), nil
}

// pagedSearch runs a paged subtree (or one-level) search of cl's base.
func (c *Connector) pagedSearch(ctx context.Context, conn *goldap.Conn, cl *class, filter string, attrs []string, fn func(*goldap.Entry) error) error {
	paging := goldap.NewControlPaging(uint32(c.cfg.PageSize))
	req := goldap.NewSearchRequest(cl.BaseDN, scopeOf(cl), goldap.NeverDerefAliases, 0, 0, false, filter, attrs,
		[]goldap.Control{paging})
	for {
		res, err := conn.Search(req)
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return newError(connector.CategoryConfiguration, "search", "base DN %q of class %q does not exist", cl.BaseDN, cl.name)
		}
		if err != nil {
			return c.limitError("search", cl.BaseDN, err)
		}
		for _, e := range res.Entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		ctrl, _ := goldap.FindControl(res.Controls, goldap.ControlTypePaging).(*goldap.ControlPaging)
		if ctrl == nil || len(ctrl.Cookie) == 0 {
			return nil
		}
		paging.SetCookie(ctrl.Cookie)
	}
}

// fetchModifyTimestamp searches (modifyTimestamp>=second) and delivers the
// objects as create-or-modify changes, oldest second first, in whole
// seconds. The server's timestamps have whole seconds and more writes may
// land in the last second after this read, so the batch token is that
// second again, with the digests of the objects read in it: the next fetch
// delivers again every object of that second whose state differs (at least
// once), and skips the ones that did not change. max is exceeded only to
// deliver whole seconds: the first new second is always delivered whole,
// so that every fetch makes progress.
func (c *Connector) fetchModifyTimestamp(ctx context.Context, cl *class, from connector.Token, pos string, max int) (connector.ChangeBatch, error) {
	const op = "fetch changes"
	tok, _ := parseTSToken(pos) // parseToken validated it
	filter := cl.filter
	if tok.second != "" {
		filter = "(&" + cl.filter + "(modifyTimestamp>=" + tok.second + "))"
	}
	batch := connector.ChangeBatch{Token: from}
	err := c.run(ctx, op, false, func(conn *goldap.Conn) error {
		entries, err := c.readTimestamped(ctx, conn, cl, filter)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			if tok.second == "" {
				latest, err := c.latestTimestampToken(ctx, conn, cl)
				if err != nil {
					return err
				}
				batch.Token = connector.Token(latest.String())
			}
			return nil
		}
		next := tsToken{second: tok.second, digests: map[[8]byte]bool{}}
		for i := 0; i < len(entries); {
			j := i
			for j < len(entries) && entries[j].ts == entries[i].ts {
				j++
			}
			group := entries[i:j]
			var fresh []tsEntry
			for _, te := range group {
				if te.ts != tok.second || !tok.digests[te.digest] {
					fresh = append(fresh, te)
				}
			}
			if len(batch.Changes) > 0 && len(batch.Changes)+len(fresh) > max {
				batch.More = true
				break
			}
			for _, te := range fresh {
				batch.Changes = append(batch.Changes, connector.Change{Type: connector.ChangeCreateOrModify, Class: cl.name,
					ID: te.obj.ID, Object: te.obj.Attributes})
			}
			next = tsToken{second: group[0].ts, digests: make(map[[8]byte]bool, len(group))}
			for _, te := range group {
				next.digests[te.digest] = true
			}
			i = j
		}
		batch.Token = connector.Token(next.String())
		return nil
	})
	if err != nil {
		return connector.ChangeBatch{}, err
	}
	return batch, nil
}
