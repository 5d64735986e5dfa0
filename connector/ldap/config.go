package ldap

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

// The defaults New applies to zero fields.
const (
	// DialTimeoutDefault bounds connecting, TLS and binding.
	DialTimeoutDefault = 10 * time.Second
	// OpTimeoutDefault bounds one LDAP request.
	OpTimeoutDefault = 30 * time.Second
	// PageSizeDefault is the simple paged results page size.
	PageSizeDefault = 500
	// PoolSizeDefault is how many connections single operations share.
	PoolSizeDefault = 4
	// UIDAttributeDefault is the primary identifier attribute.
	UIDAttributeDefault = "entryUUID"
	// AccessLogBaseDefault is the suffix of the OpenLDAP access log database.
	AccessLogBaseDefault = "cn=accesslog"
	// LiveSyncMaxDefault is how many changes FetchChanges returns when the
	// caller leaves the choice to the connector (max ≤ 0).
	LiveSyncMaxDefault = 1000
)

// LiveSyncStrategy says where the connector reads changes from.
type LiveSyncStrategy string

// The live sync strategies.
const (
	// LiveSyncNone disables live sync: FetchChanges and LatestToken fail
	// with CategoryConfiguration.
	LiveSyncNone LiveSyncStrategy = ""
	// LiveSyncAccessLog reads the OpenLDAP access log database (the
	// accesslog overlay): every successful add, modify, rename and delete,
	// with precise tokens. See the package documentation for the server
	// setup it needs.
	LiveSyncAccessLog LiveSyncStrategy = "accesslog"
	// LiveSyncModifyTimestamp searches (modifyTimestamp>=token): any
	// directory, imprecise tokens (one per fetch, whole seconds, the last
	// second delivered again), no deletes.
	LiveSyncModifyTimestamp LiveSyncStrategy = "modifyTimestamp"
)

// Scope is how deep below ClassConfig.BaseDN the objects of a class live.
type Scope string

// The search scopes.
const (
	// ScopeSubtree (the default) includes every level below the base DN.
	ScopeSubtree Scope = "sub"
	// ScopeOneLevel includes only the immediate children of the base DN.
	ScopeOneLevel Scope = "one"
)

// ClassConfig maps one connector.ObjectClass to the directory.
type ClassConfig struct {
	// Attributes lists the attributes Get, Search and live sync read.
	// Empty: every user attribute ("*"). The UID attribute is always read
	// and never reported among an object's attributes unless it is listed
	// here or is a user attribute.
	Attributes []string
	// BaseDN is where objects of the class live; Add creates them directly
	// below it. Required.
	BaseDN string
	// LDAPObjectClasses are the objectClass values of the class: every
	// search requires all of them, and Add sets them when the attributes
	// carry no objectClass. Required (at least one).
	LDAPObjectClasses []string
	// NamingAttribute is the attribute whose value forms an object's RDN
	// (e.g. "uid" or "cn"); replacing it renames the object. Required.
	NamingAttribute string
	// Scope is how deep below BaseDN the objects are. Default ScopeSubtree.
	Scope Scope
	// UIDAttribute holds the primary identifier. Default entryUUID.
	UIDAttribute string
}

// TLSConfig configures TLS for ldaps:// and StartTLS.
type TLSConfig struct {
	// CAFile is a PEM file of certificate authorities to trust instead of
	// the system pool. Empty: the system pool.
	CAFile string
	// InsecureSkipVerify turns off certificate verification. Default false;
	// for tests only.
	InsecureSkipVerify bool
	// ServerName overrides the name checked in the server certificate.
	// Empty: the URL's host.
	ServerName string
	// StartTLS upgrades an ldap:// connection with the StartTLS extended
	// operation before binding. Not allowed with ldaps://. Default false.
	StartTLS bool
}

// Config configures a Connector. Its String, GoString, Format and LogValue
// never show BindPassword; errors never contain it.
type Config struct {
	// AccessLogBase is the suffix of the access log database read by the
	// LiveSyncAccessLog strategy. Default "cn=accesslog".
	AccessLogBase string
	// BindDN is the DN to bind as. Empty: anonymous (then BindPassword MUST
	// be empty too).
	BindDN string
	// BindPassword is BindDN's password. Never printed.
	BindPassword string
	// Classes maps each object class the connector serves to its place in
	// the directory. Required (at least one).
	Classes map[connector.ObjectClass]ClassConfig
	// DialTimeout bounds connecting, the TLS handshake and the bind.
	// Default 10 s.
	DialTimeout time.Duration
	// LiveSync selects the live sync strategy. Default LiveSyncNone.
	LiveSync LiveSyncStrategy
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
	// OpTimeout bounds each LDAP request (the context's deadline applies
	// too). Default 30 s.
	OpTimeout time.Duration
	// PageSize is the simple paged results page size of searches when the
	// caller gives none. Default 500.
	PageSize int
	// PoolSize is how many connections single operations (add, modify,
	// delete, get, live sync reads) share; each running Search uses one
	// more connection of its own. Default 4.
	PoolSize int
	// TLS configures ldaps:// and StartTLS.
	TLS TLSConfig
	// URL is the server: ldap://host:port (optionally with TLS.StartTLS) or
	// ldaps://host:port. Required.
	URL string
}

const redacted = "[redacted]"

// redactedCopy returns c with the password replaced, for printing.
func (c Config) redactedCopy() configView {
	v := configView(c)
	if v.BindPassword != "" {
		v.BindPassword = redacted
	}
	v.URL = redactURL(v.URL)
	v.Logger = nil
	return v
}

// redactURL hides the password of a URL that carries one (Validate
// refuses such a URL, but a config may be printed before it is
// validated).
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		if _, has := u.User.Password(); has {
			return u.Redacted()
		}
		return s
	}
	if strings.Contains(s, "@") {
		return redacted // unparsable, and may hold credentials
	}
	return s
}

// configView is Config without its methods, so that printing it does not
// recurse.
type configView Config

// String returns c with BindPassword redacted.
func (c Config) String() string { return fmt.Sprintf("%+v", c.redactedCopy()) }

// GoString returns c with BindPassword redacted, for %#v.
func (c Config) GoString() string { return fmt.Sprintf("%#v", c.redactedCopy()) }

// Format prints c with BindPassword redacted, whatever the verb.
func (c Config) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, c.GoString())
		return
	}
	fmt.Fprint(f, c.String())
}

// LogValue logs c with BindPassword redacted.
func (c Config) LogValue() slog.Value {
	pw := ""
	if c.BindPassword != "" {
		pw = redacted
	}
	return slog.GroupValue(slog.String("url", redactURL(c.URL)), slog.String("bind_dn", c.BindDN),
		slog.String("bind_password", pw), slog.String("live_sync", string(c.LiveSync)))
}

var attrNameRE = regexp.MustCompile(`^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*$`)

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.AccessLogBase == "" {
		c.AccessLogBase = AccessLogBaseDefault
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DialTimeoutDefault
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = OpTimeoutDefault
	}
	if c.PageSize == 0 {
		c.PageSize = PageSizeDefault
	}
	if c.PoolSize == 0 {
		c.PoolSize = PoolSizeDefault
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	classes := make(map[connector.ObjectClass]ClassConfig, len(c.Classes))
	for name, cc := range c.Classes {
		if cc.UIDAttribute == "" {
			cc.UIDAttribute = UIDAttributeDefault
		}
		if cc.Scope == "" {
			cc.Scope = ScopeSubtree
		}
		cc.LDAPObjectClasses = slices.Clone(cc.LDAPObjectClasses)
		cc.Attributes = slices.Clone(cc.Attributes)
		classes[name] = cc
	}
	c.Classes = classes
	return c
}

// Validate reports every problem of c at once (after defaults), each naming
// the field. Its errors never contain BindPassword.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("ldap: Config."+format, args...)) }
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		bad("URL is empty")
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error quotes the URL, password and all
		}
		bad("URL %q does not parse: %v", redactURL(c.URL), err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		bad("URL %q: scheme must be ldap or ldaps", redactURL(c.URL))
	case u.Host == "":
		bad("URL %q has no host", redactURL(c.URL))
	case u.User != nil:
		bad("URL must not carry credentials; use BindDN and BindPassword")
	}
	if err == nil && u.Scheme == "ldaps" && c.TLS.StartTLS {
		bad("TLS.StartTLS is set with an ldaps:// URL")
	}
	if c.BindDN == "" && c.BindPassword != "" {
		bad("BindPassword is set but BindDN is empty")
	}
	if c.BindDN != "" {
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			bad("BindDN %q is not a DN: %v", c.BindDN, err)
		}
		if c.BindPassword == "" {
			bad("BindPassword is empty (an unauthenticated bind is refused)")
		}
	}
	if c.DialTimeout < 0 {
		bad("DialTimeout %v is negative", c.DialTimeout)
	}
	if c.OpTimeout < 0 {
		bad("OpTimeout %v is negative", c.OpTimeout)
	}
	if c.PageSize < 0 {
		bad("PageSize %d is negative", c.PageSize)
	}
	if c.PoolSize < 0 {
		bad("PoolSize %d is negative", c.PoolSize)
	}
	switch c.LiveSync {
	case LiveSyncNone, LiveSyncModifyTimestamp:
	case LiveSyncAccessLog:
		if _, err := goldap.ParseDN(c.AccessLogBase); err != nil {
			bad("AccessLogBase %q is not a DN: %v", c.AccessLogBase, err)
		}
	default:
		bad("LiveSync %q is unknown (want %q, %q or empty)", c.LiveSync, LiveSyncAccessLog, LiveSyncModifyTimestamp)
	}
	if len(c.Classes) == 0 {
		bad("Classes is empty")
	}
	names := make([]string, 0, len(c.Classes))
	for name := range c.Classes {
		names = append(names, string(name))
	}
	sort.Strings(names)
	for _, name := range names {
		cc := c.Classes[connector.ObjectClass(name)]
		field := fmt.Sprintf("Classes[%q]", name)
		if name == "" {
			bad("Classes has an empty object class name")
		}
		if cc.BaseDN == "" {
			bad("%s.BaseDN is empty", field)
		} else if _, err := goldap.ParseDN(cc.BaseDN); err != nil {
			bad("%s.BaseDN %q is not a DN: %v", field, cc.BaseDN, err)
		}
		if len(cc.LDAPObjectClasses) == 0 {
			bad("%s.LDAPObjectClasses is empty", field)
		}
		for _, oc := range cc.LDAPObjectClasses {
			if !attrNameRE.MatchString(oc) {
				bad("%s.LDAPObjectClasses: %q is not an object class name", field, oc)
			}
		}
		if cc.NamingAttribute == "" {
			bad("%s.NamingAttribute is empty", field)
		} else if !attrNameRE.MatchString(cc.NamingAttribute) || strings.Contains(cc.NamingAttribute, ";") {
			bad("%s.NamingAttribute %q is not an attribute name", field, cc.NamingAttribute)
		}
		if !attrNameRE.MatchString(cc.UIDAttribute) {
			bad("%s.UIDAttribute %q is not an attribute name", field, cc.UIDAttribute)
		}
		for _, a := range cc.Attributes {
			if a != "*" && a != "+" && !attrNameRE.MatchString(a) {
				bad("%s.Attributes: %q is not an attribute name", field, a)
			}
		}
		if cc.Scope != ScopeSubtree && cc.Scope != ScopeOneLevel {
			bad("%s.Scope %q is unknown (want %q or %q)", field, cc.Scope, ScopeSubtree, ScopeOneLevel)
		}
	}
	return errors.Join(errs...)
}
