package ldap

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

// hostile are values that would change a filter or a DN if they were not
// escaped.
var hostile = []string{
	"*)(uid=*",
	"*",
	"a\x00b",
	"' OR 1=1 --",
	`,=+<>#;"\`,
	`#lead`,
	" lead and trail ",
	"x,ou=people,dc=example,dc=com",
	"uid=admin)(|(uid=*",
	`back\slash\2a`,
	"ünïcödé ✓",
	strings.Repeat("long-", 40),
}

func TestHostileNamingValues(t *testing.T) {
	t.Parallel()
	c, _, base := setup(t)
	ctx := context.Background()
	names := map[string]bool{}
	for _, v := range hostile {
		attrs := person(v)
		res, err := c.Add(ctx, personClass, attrs)
		if err != nil {
			t.Fatalf("add uid=%q: %v", v, err)
		}
		if names[strings.ToLower(res.ID.Name)] {
			t.Fatalf("uid=%q collides with an earlier entry: %s", v, res.ID.Name)
		}
		names[strings.ToLower(res.ID.Name)] = true
		if !strings.HasSuffix(res.ID.Name, ","+base) {
			t.Fatalf("uid=%q landed outside the base: %s", v, res.ID.Name)
		}
		for _, id := range []connector.Identifiers{{UID: res.ID.UID}, {Name: res.ID.Name}} {
			got, err := c.Get(ctx, personClass, id)
			if err != nil {
				t.Fatalf("get uid=%q by %+v: %v", v, id, err)
			}
			if got.ID != res.ID || got.Attributes.Get("uid") != v {
				t.Fatalf("uid=%q read back as %+v %q", v, got.ID, got.Attributes.Get("uid"))
			}
		}
		// Rename to another hostile value and back.
		r, err := c.Modify(ctx, personClass, res.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{v + "2"}}})
		if err != nil {
			t.Fatalf("rename uid=%q: %v", v, err)
		}
		got, err := c.Get(ctx, personClass, connector.Identifiers{Name: r.ID.Name})
		if err != nil || got.Attributes.Get("uid") != v+"2" {
			t.Fatalf("renamed uid=%q: %+v %v", v, got, err)
		}
		if _, err := c.Modify(ctx, personClass, r.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{v}}}); err != nil {
			t.Fatalf("rename back uid=%q: %v", v, err)
		}
	}
	// A name too long for the server's index is refused with a message
	// that says which entry.
	if _, err := c.Add(ctx, personClass, person(strings.Repeat("x", 2000))); err == nil || !strings.Contains(err.Error(), "adding \"uid=xxx") {
		t.Errorf("add of a 2000-byte name: %v", err)
	}
	// Hostile UIDs and names find nothing, and never something else.
	for _, v := range hostile {
		if _, err := c.Get(ctx, personClass, connector.Identifiers{UID: v}); !errors.Is(err, connector.ErrNotFound) {
			t.Errorf("get by UID %q: %v, want not found", v, err)
		}
		if _, err := c.Delete(ctx, personClass, connector.Identifiers{UID: v}); !errors.Is(err, connector.ErrNotFound) {
			t.Errorf("delete by UID %q: %v, want not found", v, err)
		}
	}
	// Every entry is listed once.
	n := 0
	if err := c.Search(ctx, personClass, connector.SearchOptions{}, func(connector.Object) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(hostile) {
		t.Fatalf("search found %d entries, want %d", n, len(hostile))
	}
}

func TestHostileAttributeValues(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ctx := context.Background()
	res, err := c.Add(ctx, personClass, person("values"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range append(hostile, strings.Repeat("long-", 2000)) {
		if _, err := c.Modify(ctx, personClass, res.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "description", Values: []string{v}}}); err != nil {
			t.Fatalf("replace description with %q: %v", v, err)
		}
		got, err := c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID})
		if err != nil || got.Attributes.Get("description") != v {
			t.Fatalf("description %q read back as %q (%v)", v, got.Attributes.Get("description"), err)
		}
	}
}

func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ctx := context.Background()
	_, err := c.Add(ctx, personClass, person("bad\xff"))
	if catOf(t, err) != connector.CategorySchema || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("invalid UTF-8 name: %v", err)
	}
	attrs := person("utf")
	attrs["description"] = []string{"bad\xffvalue"}
	_, err = c.Add(ctx, personClass, attrs)
	if catOf(t, err) != connector.CategorySchema || !strings.Contains(err.Error(), "description") {
		t.Fatalf("invalid UTF-8 value: %v", err)
	}
	res, err := c.Add(ctx, personClass, person("utf"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Modify(ctx, personClass, res.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{"\xfe"}}})
	if catOf(t, err) != connector.CategorySchema {
		t.Fatalf("rename to invalid UTF-8: %v", err)
	}
	// A hostile value in an ordinary search filter (by Name) is a DN syntax
	// error, not an injection.
	_, err = c.Get(ctx, personClass, connector.Identifiers{Name: "uid=*)(uid=*"})
	if err == nil {
		t.Fatal("get by a hostile name succeeded")
	}
}

func TestEscapeRDNValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":      "plain",
		" a ":        `\ a\ `,
		"#a#":        `\#a#`,
		`a,b+c=d`:    `a\,b\+c\=d`,
		"<>;\"\\":    `\<\>\;\"\\`,
		"a\x00b\x1f": `a\00b\1F`,
		"ü":          "ü",
	} {
		if got := escapeRDNValue(in); got != want {
			t.Errorf("escapeRDNValue(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := buildRDN("uid", ""); err == nil {
		t.Error("empty RDN value accepted")
	}
	if r, p := splitRDN(`uid=a\,b,ou=x,dc=y`); r != `uid=a\,b` || p != "ou=x,dc=y" {
		t.Errorf("splitRDN = %q %q", r, p)
	}
	if r, p := splitRDN(`cn="a,b",o=x`); r != `cn="a,b"` || p != "o=x" {
		t.Errorf("splitRDN quoted = %q %q", r, p)
	}
	if r, p := splitRDN("o=x"); r != "o=x" || p != "" {
		t.Errorf("splitRDN single = %q %q", r, p)
	}
}
