package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

// Connector is a connector.Connector for an LDAP directory. It also
// implements connector.Searcher, connector.LiveSyncer and connector.Tester.
// It is safe for concurrent use. Close it when done.
type Connector struct {
	cfg Config // BindPassword emptied: see password
	// password returns Config.BindPassword. A func, not a string field,
	// so that printing the connector by reflection (fmt's %s of a struct
	// holding it unexported, say) never shows it.
	password func() string
	url      *url.URL
	hostPort string
	tls      *tls.Config
	pool     *pool
	log      *slog.Logger
	classes  map[connector.ObjectClass]*class

	warnOnce sync.Once
}

// class is a validated ClassConfig with its parsed base DN.
type class struct {
	ClassConfig
	name     connector.ObjectClass
	base     *goldap.DN
	filter   string   // matches the class's object classes
	attrs    []string // requested attributes, UID attribute included
	explicit map[string]bool
}

var (
	_ connector.Connector  = (*Connector)(nil)
	_ connector.Searcher   = (*Connector)(nil)
	_ connector.LiveSyncer = (*Connector)(nil)
	_ connector.Tester     = (*Connector)(nil)
)

// New validates cfg (every problem at once, each naming its field), applies
// the defaults and returns a Connector. It does not connect: the first
// operation does (use Test to check the configuration against the server).
func New(cfg Config) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	u, _ := url.Parse(cfg.URL) // Validate parsed it
	tc, err := tlsConfig(cfg, u.Hostname())
	if err != nil {
		return nil, err
	}
	pw := cfg.BindPassword
	cfg.BindPassword = ""
	c := &Connector{cfg: cfg, password: func() string { return pw }, url: u, hostPort: hostPort(u), tls: tc, log: cfg.Logger,
		classes: make(map[connector.ObjectClass]*class, len(cfg.Classes))}
	for name, cc := range cfg.Classes {
		base, _ := goldap.ParseDN(cc.BaseDN) // Validate parsed it
		cl := &class{ClassConfig: cc, name: name, base: base, filter: classFilter(cc.LDAPObjectClasses),
			explicit: map[string]bool{}}
		cl.attrs = slices.Clone(cc.Attributes)
		if len(cl.attrs) == 0 {
			cl.attrs = []string{"*"}
		}
		for _, a := range cc.Attributes {
			cl.explicit[strings.ToLower(a)] = true
		}
		if !cl.explicit[strings.ToLower(cc.UIDAttribute)] {
			cl.attrs = append(cl.attrs, cc.UIDAttribute)
		}
		c.classes[name] = cl
	}
	c.pool = newPool(c, cfg.PoolSize)
	return c, nil
}

// Close closes the pooled connections. Operations after Close fail with
// CategoryNotSent.
func (c *Connector) Close() error {
	c.pool.close()
	return nil
}

// String describes the connector without secrets.
func (c *Connector) String() string { return "ldap connector for " + c.cfg.URL }

func (c *Connector) class(op string, name connector.ObjectClass) (*class, error) {
	cl, ok := c.classes[name]
	if !ok {
		return nil, newError(connector.CategorySchema, op, "object class %q is not configured", name)
	}
	return cl, nil
}

// operational attributes are never reported among an object's attributes
// unless ClassConfig.Attributes names them.
var operational = map[string]bool{
	"entryuuid": true, "entrycsn": true, "entrydn": true, "createtimestamp": true, "modifytimestamp": true,
	"creatorsname": true, "modifiersname": true, "structuralobjectclass": true, "subschemasubentry": true,
	"hassubordinates": true, "contextcsn": true,
}

// object converts an entry of cl.
func (cl *class) object(e *goldap.Entry) connector.Object {
	o := connector.Object{Class: cl.name, ID: connector.Identifiers{Name: e.DN}, Attributes: connector.Attributes{}}
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, cl.UIDAttribute) && len(a.Values) > 0 {
			o.ID.UID = a.Values[0]
		}
		if len(a.Values) == 0 || (operational[strings.ToLower(a.Name)] && !cl.explicit[strings.ToLower(a.Name)]) {
			continue
		}
		o.Attributes[a.Name] = slices.Clone(a.Values)
	}
	return o
}

// lookup reads the object id of cl on conn: by UID (a subtree search under
// the base DN), else by Name (a base-scope read of the DN, which must lie
// within the class's base and scope). attrs nil reads cl.attrs. A missing
// object is CategoryNotFound.
func (c *Connector) lookup(conn *goldap.Conn, op string, cl *class, id connector.Identifiers, attrs []string) (*goldap.Entry, error) {
	if attrs == nil {
		attrs = cl.attrs
	}
	var req *goldap.SearchRequest
	switch {
	case id.UID != "":
		req = goldap.NewSearchRequest(cl.BaseDN, scopeOf(cl), goldap.NeverDerefAliases, 2, 0, false,
			"(&"+cl.filter+eqFilter(cl.UIDAttribute, id.UID)+")", attrs, nil)
	case id.Name != "":
		dn, err := parseDN("name", id.Name)
		if err != nil {
			return nil, &connector.Error{Category: connector.CategorySchema, Op: op, Err: err}
		}
		if !under(cl.base, dn, cl.Scope == ScopeOneLevel) || len(dn.RDNs) == len(cl.base.RDNs) {
			return nil, newError(connector.CategorySchema, op, "name %q is not within base DN %q of class %q", id.Name, cl.BaseDN, cl.name)
		}
		req = goldap.NewSearchRequest(id.Name, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, 0, false,
			cl.filter, attrs, nil)
	default:
		return nil, newError(connector.CategorySchema, op, "no identifier given")
	}
	res, err := conn.Search(req)
	if err != nil {
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) && id.UID == "" {
			return nil, newError(connector.CategoryNotFound, op, "%s %q not found", cl.name, id.Name)
		}
		if goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
			return nil, newError(connector.CategoryGeneric, op, "%s %q matches several entries", cl.UIDAttribute, id.UID)
		}
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return nil, newError(connector.CategoryConfiguration, op, "base DN %q of class %q does not exist", cl.BaseDN, cl.name)
		}
		return nil, err
	}
	switch len(res.Entries) {
	case 0:
		if id.UID != "" {
			return nil, newError(connector.CategoryNotFound, op, "%s with %s %q not found", cl.name, cl.UIDAttribute, id.UID)
		}
		return nil, newError(connector.CategoryNotFound, op, "%s %q not found", cl.name, id.Name)
	case 1:
		return res.Entries[0], nil
	}
	return nil, newError(connector.CategoryGeneric, op, "%s %q matches %d entries", cl.UIDAttribute, id.UID, len(res.Entries))
}

func scopeOf(cl *class) int {
	if cl.Scope == ScopeOneLevel {
		return goldap.ScopeSingleLevel
	}
	return goldap.ScopeWholeSubtree
}

// values returns the distinct non-empty-list values of attribute name in
// attrs, looked up case-insensitively.
func values(attrs connector.Attributes, name string) []string {
	var out []string
	for k, v := range attrs {
		if strings.EqualFold(k, name) {
			out = append(out, v...)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func checkAttrName(op, name string) error {
	if !attrNameRE.MatchString(name) {
		return newError(connector.CategorySchema, op, "%q is not an attribute name", name)
	}
	return nil
}

// Add creates an entry below the class's base DN, named by the naming
// attribute's single value (escaped), with objectClass set to attrs'
// objectClass values plus LDAPObjectClasses. It returns the entry's UID
// attribute and its DN as the server spells it. An existing entry of that
// DN fails with CategoryAlreadyExists and Error.Existing set.
func (c *Connector) Add(ctx context.Context, oc connector.ObjectClass, attrs connector.Attributes) (connector.Result, error) {
	const op = "add"
	cl, err := c.class(op, oc)
	if err != nil {
		return connector.Result{}, err
	}
	naming := values(attrs, cl.NamingAttribute)
	if len(naming) != 1 {
		return connector.Result{}, newError(connector.CategorySchema, op,
			"naming attribute %q must have exactly one value, has %d", cl.NamingAttribute, len(naming))
	}
	rdn, err := buildRDN(cl.NamingAttribute, naming[0])
	if err != nil {
		return connector.Result{}, &connector.Error{Category: connector.CategorySchema, Op: op, Err: err}
	}
	dn := rdn + "," + cl.BaseDN
	req := goldap.NewAddRequest(dn, nil)
	// objectClass: the caller's values plus the class's own, so that the
	// new entry is always one of the class.
	ocs := slices.Clone(cl.LDAPObjectClasses)
	for _, oc := range values(attrs, "objectClass") {
		if !slices.ContainsFunc(ocs, func(s string) bool { return strings.EqualFold(s, oc) }) {
			ocs = append(ocs, oc)
		}
	}
	req.Attribute("objectClass", ocs)
	for _, name := range attrs.Names() {
		if err := checkAttrName(op, name); err != nil {
			return connector.Result{}, err
		}
		if !strings.EqualFold(name, "objectClass") {
			req.Attribute(name, slices.Compact(slices.Sorted(slices.Values(attrs[name]))))
		}
	}
	var res connector.Result
	err = c.do(ctx, op, func(conn *goldap.Conn) error {
		if err := conn.Add(req); err != nil {
			return fmt.Errorf("adding %s: %w", shorten(dn), err)
		}
		e, err := c.lookup(conn, op, cl, connector.Identifiers{Name: dn}, []string{cl.UIDAttribute})
		if err != nil {
			// The entry was created; not being able to read it back leaves
			// the caller to find it, as after a lost response.
			return &connector.Error{Category: connector.CategoryOutcomeUnknown, Op: op,
				Err: fmt.Errorf("created %q but could not read it back: %w", dn, err)}
		}
		res.ID = cl.object(e).ID
		return nil
	})
	if err != nil {
		if errors.Is(err, connector.ErrAlreadyExists) {
			err = c.withExisting(ctx, cl, dn, err)
		}
		return connector.Result{}, err
	}
	return res, nil
}

// withExisting adds the identifiers of the entry at dn to an
// already-exists error, when one read finds them.
func (c *Connector) withExisting(ctx context.Context, cl *class, dn string, err error) error {
	var ce *connector.Error
	if !errors.As(err, &ce) {
		return err
	}
	out := *ce
	out.Existing = &connector.Identifiers{Name: dn}
	_ = c.do(ctx, "add", func(conn *goldap.Conn) error {
		e, err := c.lookup(conn, "add", cl, connector.Identifiers{Name: dn}, []string{cl.UIDAttribute})
		if err == nil {
			id := cl.object(e).ID
			out.Existing = &id
		}
		return err
	})
	return &out
}

// Modify applies changes to the entry id. A Replace of the naming attribute
// with one value different from the current RDN value first renames the
// entry (ModifyDN, old RDN value deleted); Result.ID then carries the new
// DN. The other changes become one LDAP modify request sent with the
// permissive modify control, so that adding a present value or deleting an
// absent one changes nothing (value sets), as the connector SPI says.
func (c *Connector) Modify(ctx context.Context, oc connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
	const op = "modify"
	cl, err := c.class(op, oc)
	if err != nil {
		return connector.Result{}, err
	}
	newName := ""
	for i, ch := range changes {
		if err := checkAttrName(op, ch.Name); err != nil {
			return connector.Result{}, err
		}
		if ch.Op < connector.AddValues || ch.Op > connector.Replace {
			return connector.Result{}, newError(connector.CategorySchema, op, "change %d (%q) has unknown operation %d", i, ch.Name, ch.Op)
		}
		if ch.Op == connector.Replace && strings.EqualFold(ch.Name, cl.NamingAttribute) {
			v := slices.Compact(slices.Sorted(slices.Values(ch.Values)))
			if len(v) != 1 {
				return connector.Result{}, newError(connector.CategorySchema, op,
					"replace of naming attribute %q needs exactly one value, has %d", cl.NamingAttribute, len(v))
			}
			if _, err := buildRDN(cl.NamingAttribute, v[0]); err != nil {
				return connector.Result{}, &connector.Error{Category: connector.CategorySchema, Op: op, Err: err}
			}
			newName = v[0]
		}
	}
	var res connector.Result
	err = c.do(ctx, op, func(conn *goldap.Conn) error {
		dn := id.Name
		res.ID = id
		if id.UID != "" || newName != "" {
			e, err := c.lookup(conn, op, cl, id, []string{cl.UIDAttribute})
			if err != nil {
				return err
			}
			res.ID = cl.object(e).ID
			dn = e.DN
		} else if _, err := c.checkName(op, cl, dn); err != nil {
			return err
		}
		if newName != "" {
			parsed, err := parseDN("entry", dn)
			if err != nil {
				return err
			}
			if cur, _ := rdnValue(parsed, cl.NamingAttribute); cur != newName {
				rdn, _ := buildRDN(cl.NamingAttribute, newName)
				if err := conn.ModifyDN(goldap.NewModifyDNRequest(dn, rdn, true, "")); err != nil {
					return fmt.Errorf("renaming %s to %s: %w", shorten(dn), shorten(rdn), err)
				}
				_, parent := splitRDN(dn)
				e, err := c.lookup(conn, op, cl, connector.Identifiers{Name: rdn + "," + parent}, []string{cl.UIDAttribute})
				if err != nil {
					return &connector.Error{Category: connector.CategoryOutcomeUnknown, Op: op,
						Err: fmt.Errorf("renamed %q but could not read it back: %w", dn, err)}
				}
				res.ID = cl.object(e).ID
				dn = e.DN
			}
		}
		req := goldap.NewModifyRequest(dn, []goldap.Control{permissiveModify})
		for _, ch := range changes {
			if newName != "" && ch.Op == connector.Replace && strings.EqualFold(ch.Name, cl.NamingAttribute) {
				continue // the rename set it; sending it again only adds a log record
			}
			vals := slices.Compact(slices.Sorted(slices.Values(ch.Values)))
			switch ch.Op {
			case connector.AddValues:
				if len(vals) > 0 {
					req.Add(ch.Name, vals)
				}
			case connector.DeleteValues:
				req.Delete(ch.Name, vals)
			case connector.Replace:
				req.Replace(ch.Name, vals)
			}
		}
		if len(req.Changes) == 0 {
			if newName == "" && id.UID == "" {
				// Nothing to send; still report a missing object.
				_, err := c.lookup(conn, op, cl, connector.Identifiers{Name: dn}, []string{"1.1"})
				return err
			}
			return nil
		}
		if err := conn.Modify(req); err != nil {
			return fmt.Errorf("modifying %s: %w", shorten(dn), err)
		}
		return nil
	})
	if err != nil {
		return connector.Result{}, err
	}
	return res, nil
}

// permissiveModify asks the server not to fail adds of present values and
// deletes of absent ones (OID 1.2.840.113556.1.4.1413; OpenLDAP and Active
// Directory support it). Not critical: a server without it reports those
// cases as schema errors instead.
var permissiveModify = goldap.NewControlString(goldap.ControlTypeMicrosoftPermissiveModify, false, "")

// checkName validates a DN given as an object's Name for cl.
func (c *Connector) checkName(op string, cl *class, name string) (*goldap.DN, error) {
	if name == "" {
		return nil, newError(connector.CategorySchema, op, "no identifier given")
	}
	dn, err := parseDN("name", name)
	if err != nil {
		return nil, &connector.Error{Category: connector.CategorySchema, Op: op, Err: err}
	}
	if !under(cl.base, dn, cl.Scope == ScopeOneLevel) || len(dn.RDNs) == len(cl.base.RDNs) {
		return nil, newError(connector.CategorySchema, op, "name %q is not within base DN %q of class %q", name, cl.BaseDN, cl.name)
	}
	return dn, nil
}

// splitRDN splits dn at its first unescaped comma.
func splitRDN(dn string) (rdn, parent string) {
	quoted := false
	for i := 0; i < len(dn); i++ {
		switch dn[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',', ';':
			if !quoted {
				return dn[:i], strings.TrimLeft(dn[i+1:], " ")
			}
		}
	}
	return dn, ""
}

// Delete deletes the entry id (found by UID when set, else by DN). A missing
// entry is CategoryNotFound.
func (c *Connector) Delete(ctx context.Context, oc connector.ObjectClass, id connector.Identifiers) (connector.Result, error) {
	const op = "delete"
	cl, err := c.class(op, oc)
	if err != nil {
		return connector.Result{}, err
	}
	err = c.do(ctx, op, func(conn *goldap.Conn) error {
		dn := id.Name
		if id.UID != "" {
			e, err := c.lookup(conn, op, cl, id, []string{"1.1"})
			if err != nil {
				return err
			}
			dn = e.DN
		} else if _, err := c.checkName(op, cl, dn); err != nil {
			return err
		}
		if err := conn.Del(goldap.NewDelRequest(dn, nil)); err != nil {
			return fmt.Errorf("deleting %s: %w", shorten(dn), err)
		}
		return nil
	})
	return connector.Result{}, err
}

// Get reads the entry id: by UID (a search for the UID attribute under the
// base DN) when set, else by DN.
func (c *Connector) Get(ctx context.Context, oc connector.ObjectClass, id connector.Identifiers) (connector.Object, error) {
	const op = "get"
	cl, err := c.class(op, oc)
	if err != nil {
		return connector.Object{}, err
	}
	var obj connector.Object
	err = c.do(ctx, op, func(conn *goldap.Conn) error {
		e, err := c.lookup(conn, op, cl, id, nil)
		if err != nil {
			return err
		}
		obj = cl.object(e)
		return nil
	})
	return obj, err
}

// shorten quotes s for an error message, cut to 120 bytes.
func shorten(s string) string {
	if len(s) > 120 {
		return fmt.Sprintf("%q... (%d bytes)", s[:120], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// callbackError carries an error of Search's callback through the
// connection handling untouched.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }

// Search calls fn for every entry of the class under its base DN, page by
// page with the simple paged results control (opts.PageSize, else
// Config.PageSize), holding one page at a time. With opts.Name it reads that
// one DN (no call when it does not exist). It returns fn's error as is.
// The search uses a connection of its own, so fn may call the connector.
func (c *Connector) Search(ctx context.Context, oc connector.ObjectClass, opts connector.SearchOptions, fn func(connector.Object) error) error {
	const op = "search"
	cl, err := c.class(op, oc)
	if err != nil {
		return err
	}
	if opts.Name != "" {
		obj, err := c.Get(ctx, oc, connector.Identifiers{Name: opts.Name})
		if errors.Is(err, connector.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(obj)
	}
	size := opts.PageSize
	if size <= 0 {
		size = c.cfg.PageSize
	}
	err = c.run(ctx, op, false, func(conn *goldap.Conn) error {
		paging := goldap.NewControlPaging(uint32(size))
		req := goldap.NewSearchRequest(cl.BaseDN, scopeOf(cl), goldap.NeverDerefAliases, 0, 0, false,
			cl.filter, cl.attrs, []goldap.Control{paging})
		for {
			res, err := conn.Search(req)
			if err != nil {
				if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
					return newError(connector.CategoryConfiguration, op, "base DN %q of class %q does not exist", cl.BaseDN, cl.name)
				}
				return c.limitError(op, cl.BaseDN, err)
			}
			for _, e := range res.Entries {
				if err := fn(cl.object(e)); err != nil {
					return &callbackError{err}
				}
				if err := ctx.Err(); err != nil {
					return &callbackError{err}
				}
			}
			ctrl, _ := goldap.FindControl(res.Controls, goldap.ControlTypePaging).(*goldap.ControlPaging)
			if ctrl == nil || len(ctrl.Cookie) == 0 {
				return nil
			}
			paging.SetCookie(ctrl.Cookie)
		}
	})
	var cb *callbackError
	if errors.As(err, &cb) {
		return cb.err
	}
	return err
}

// Test binds and reads the base DN of every class (and the access log base
// with LiveSyncAccessLog). A missing base DN is CategoryConfiguration.
func (c *Connector) Test(ctx context.Context) error {
	const op = "test"
	return c.do(ctx, op, func(conn *goldap.Conn) error {
		bases := make([]string, 0, len(c.classes)+1)
		for _, cl := range c.classes {
			bases = append(bases, cl.BaseDN)
		}
		sort.Strings(bases)
		if c.cfg.LiveSync == LiveSyncAccessLog {
			bases = append(bases, c.cfg.AccessLogBase)
		}
		for _, base := range bases {
			_, err := conn.Search(goldap.NewSearchRequest(base, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, 0, false,
				"(objectClass=*)", []string{"1.1"}, nil))
			if goldap.IsErrorAnyOf(err, goldap.LDAPResultNoSuchObject, goldap.LDAPResultInsufficientAccessRights) {
				return newError(connector.CategoryConfiguration, op, "base DN %q cannot be read: %v", base, err)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
