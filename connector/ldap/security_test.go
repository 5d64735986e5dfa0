package ldap

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

// TestPasswordNeverPrinted prints a connector, a struct holding one
// unexported (fmt then walks it by reflection, without its methods, for a
// verb that does not fit), and configs whose URL carries a password, with
// every verb: the password shows nowhere.
func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	const pw = "Pw-never-printed-71c3"
	cfg := Config{URL: "ldap://127.0.0.1:1", BindDN: "cn=admin,dc=example,dc=com", BindPassword: pw,
		Classes: map[connector.ObjectClass]ClassConfig{
			"person": {BaseDN: "ou=people,dc=example,dc=com", LDAPObjectClasses: []string{"inetOrgPerson"}, NamingAttribute: "uid"},
		}}
	c := newConnector(t, cfg)
	holder := struct{ c *Connector }{c}
	urlCfg := cfg
	urlCfg.URL = "ldap://admin:" + pw + "@127.0.0.1:1"
	var texts []string
	for _, v := range []any{c, holder, &holder, cfg, &cfg, urlCfg} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x"} {
			texts = append(texts, fmt.Sprintf(verb, v))
		}
	}
	for _, u := range []string{"ldap://admin:" + pw + "@127.0.0.1:x", "ldap://admin:" + pw + "@", "http://admin:" + pw + "@h", "ldap://admin:" + pw + "@h"} {
		bad := cfg
		bad.URL = u
		err := bad.Validate()
		if err == nil {
			t.Fatalf("Validate accepted URL %q", u)
		}
		texts = append(texts, err.Error(), fmt.Sprint(bad))
	}
	for _, s := range texts {
		if strings.Contains(s, pw) {
			t.Errorf("password shown: %s", s)
		}
	}
	if got := c.password(); got != pw {
		t.Fatalf("the connector binds with %q, want the configured password", got)
	}
}

// TestLongValues stores and finds 100 KB values: an attribute value comes
// back whole, a search or get by a 100 KB name finds nothing (and fails
// no other way than not found or schema), and a search by a name that is a prefix pattern of
// another finds only its own object.
func TestLongValues(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ctx := context.Background()
	long := strings.Repeat("0123456789abcdef", 100<<10/16)
	a := person("long-value")
	a["description"] = []string{long}
	res, err := c.Add(ctx, personClass, a)
	if err != nil {
		t.Fatalf("Add with a 100 KB value: %v", err)
	}
	got, err := c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID})
	if err != nil || got.Attributes.Get("description") != long {
		t.Fatalf("a 100 KB value read back as %d bytes (%v)", len(got.Attributes.Get("description")), err)
	}
	if _, err := c.Modify(ctx, personClass, res.ID, []connector.AttributeDelta{{Op: connector.AddValues, Name: "description", Values: []string{long + "2"}}}); err != nil {
		t.Fatalf("adding a second 100 KB value: %v", err)
	}
	n := 0
	err = c.Search(ctx, personClass, connector.SearchOptions{Name: "uid=" + long + ",ou=nowhere"}, func(connector.Object) error { n++; return nil })
	if n != 0 || err != nil && connector.Classify(err) != connector.CategoryNotFound && connector.Classify(err) != connector.CategorySchema {
		t.Fatalf("search by a 100 KB name: %d objects, %v", n, err)
	}
	if _, err := c.Get(ctx, personClass, connector.Identifiers{Name: "uid=" + long + "," + res.ID.Name[strings.Index(res.ID.Name, ",")+1:]}); err == nil ||
		connector.Classify(err) != connector.CategoryNotFound && connector.Classify(err) != connector.CategorySchema {
		// slapd refuses so long a DN as invalid syntax: a schema error.
		t.Fatalf("get by a 100 KB name: %v, want not found or a schema error", err)
	}
	// Pattern-like names: "p*" exists beside "p-x"; a search by "p*"
	// (escaped) finds only it.
	star, err := c.Add(ctx, personClass, person("p*"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(ctx, personClass, person("p-x")); err != nil {
		t.Fatal(err)
	}
	var found []string
	err = c.Search(ctx, personClass, connector.SearchOptions{Name: star.ID.Name}, func(o connector.Object) error {
		found = append(found, o.ID.UID)
		return nil
	})
	if err != nil || len(found) != 1 || found[0] != star.ID.UID {
		t.Fatalf("search by %q found %v (%v); want only %s", star.ID.Name, found, err, star.ID.UID)
	}
}
