package ldap

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

func TestAddGetModifyDelete(t *testing.T) {
	t.Parallel()
	c, _, base := setup(t)
	ctx := context.Background()

	res, err := c.Add(ctx, personClass, person("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if res.ID.UID == "" || res.ID.Name != "uid=alice,"+base {
		t.Fatalf("Add returned %+v", res.ID)
	}
	byUID, err := c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID})
	if err != nil {
		t.Fatal(err)
	}
	byName, err := c.Get(ctx, personClass, connector.Identifiers{Name: res.ID.Name})
	if err != nil {
		t.Fatal(err)
	}
	if byUID.ID != res.ID || byName.ID != res.ID {
		t.Fatalf("ids differ: add %+v, get by uid %+v, by name %+v", res.ID, byUID.ID, byName.ID)
	}
	want := person("alice")
	want["objectClass"] = []string{"inetOrgPerson"}
	if !byUID.Attributes.Equal(want) {
		t.Fatalf("attributes = %v, want %v", byUID.Attributes, want)
	}
	if _, ok := byUID.Attributes["entryUUID"]; ok {
		t.Fatal("operational entryUUID reported among attributes")
	}

	// Value-set semantics: adding a present value and deleting an absent one change nothing.
	_, err = c.Modify(ctx, personClass, res.ID, []connector.AttributeDelta{
		{Op: connector.AddValues, Name: "mail", Values: []string{"a@example.com", "b@example.com"}},
		{Op: connector.AddValues, Name: "cn", Values: []string{"Person alice"}},
		{Op: connector.DeleteValues, Name: "description", Values: []string{"absent"}},
		{Op: connector.Replace, Name: "sn", Values: []string{"Changed"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID})
	if err != nil {
		t.Fatal(err)
	}
	want = connector.ApplyChanges(want, []connector.AttributeDelta{
		{Op: connector.AddValues, Name: "mail", Values: []string{"a@example.com", "b@example.com"}},
		{Op: connector.Replace, Name: "sn", Values: []string{"Changed"}},
	})
	if !got.Attributes.Equal(want) {
		t.Fatalf("after modify %v, want %v", got.Attributes, want)
	}
	_, err = c.Modify(ctx, personClass, connector.Identifiers{Name: res.ID.Name}, []connector.AttributeDelta{
		{Op: connector.DeleteValues, Name: "mail", Values: []string{"a@example.com"}},
		{Op: connector.Replace, Name: "description"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID})
	if !slices.Equal(got.Attributes["mail"], []string{"b@example.com"}) {
		t.Fatalf("mail = %v", got.Attributes["mail"])
	}

	if _, err := c.Delete(ctx, personClass, connector.Identifiers{UID: res.ID.UID}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []connector.Identifiers{{UID: res.ID.UID}, {Name: res.ID.Name}} {
		if _, err := c.Get(ctx, personClass, id); !errors.Is(err, connector.ErrNotFound) {
			t.Fatalf("Get %+v after delete: %v, want not found", id, err)
		}
		if _, err := c.Delete(ctx, personClass, id); !errors.Is(err, connector.ErrNotFound) {
			t.Fatalf("Delete %+v after delete: %v, want not found", id, err)
		}
		if _, err := c.Modify(ctx, personClass, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "sn", Values: []string{"x"}}}); !errors.Is(err, connector.ErrNotFound) {
			t.Fatalf("Modify %+v after delete: %v, want not found", id, err)
		}
	}
}

func TestAddExisting(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ctx := context.Background()
	first, err := c.Add(ctx, personClass, person("bob"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Add(ctx, personClass, person("bob"))
	if !errors.Is(err, connector.ErrAlreadyExists) {
		t.Fatalf("second add: %v, want already exists", err)
	}
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Existing == nil || *ce.Existing != first.ID {
		t.Fatalf("Existing = %+v, want %+v", ce.Existing, first.ID)
	}
}

func TestRename(t *testing.T) {
	t.Parallel()
	c, _, base := setup(t)
	ctx := context.Background()
	res, err := c.Add(ctx, personClass, person("carol"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := c.Modify(ctx, personClass, connector.Identifiers{UID: res.ID.UID}, []connector.AttributeDelta{
		{Op: connector.Replace, Name: "uid", Values: []string{"carol2"}},
		{Op: connector.Replace, Name: "sn", Values: []string{"Renamed"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if mod.ID.UID != res.ID.UID || mod.ID.Name != "uid=carol2,"+base {
		t.Fatalf("rename returned %+v", mod.ID)
	}
	got, err := c.Get(ctx, personClass, connector.Identifiers{Name: mod.ID.Name})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Attributes["uid"], []string{"carol2"}) || got.Attributes.Get("sn") != "Renamed" {
		t.Fatalf("after rename %v", got.Attributes)
	}
	if _, err := c.Get(ctx, personClass, connector.Identifiers{Name: res.ID.Name}); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("old name still found: %v", err)
	}
	// Renaming by Name, and a replace with the current value, which is no rename.
	mod2, err := c.Modify(ctx, personClass, connector.Identifiers{Name: mod.ID.Name}, []connector.AttributeDelta{
		{Op: connector.Replace, Name: "uid", Values: []string{"carol2"}},
	})
	if err != nil || mod2.ID != mod.ID {
		t.Fatalf("no-op rename: %+v, %v", mod2.ID, err)
	}
	_, err = c.Modify(ctx, personClass, mod.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{"a", "b"}}})
	if catOf(t, err) != connector.CategorySchema {
		t.Fatalf("two-valued rename: %v", err)
	}
}

func TestSearchPaged(t *testing.T) {
	t.Parallel()
	c, s, base := setup(t)
	ctx := context.Background()
	const n = 23
	for i := range n {
		if _, err := c.Add(ctx, personClass, person("p"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	// An entry of another object class below the same base is not listed.
	req := goldap.NewAddRequest("ou=sub,"+base, nil)
	req.Attribute("objectClass", []string{"organizationalUnit"})
	req.Attribute("ou", []string{"sub"})
	if err := admin(t, s).Add(req); err != nil {
		t.Fatal(err)
	}
	var names []string
	err := c.Search(ctx, personClass, connector.SearchOptions{PageSize: 5}, func(o connector.Object) error {
		if o.ID.UID == "" || o.Class != personClass {
			t.Errorf("object %+v", o)
		}
		names = append(names, o.ID.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n {
		t.Fatalf("found %d objects, want %d: %v", len(names), n, names)
	}
	// The callback's error comes back as is and stops the search.
	stop := errors.New("stop here")
	calls := 0
	err = c.Search(ctx, personClass, connector.SearchOptions{PageSize: 5}, func(connector.Object) error {
		calls++
		if calls == 7 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 7 {
		t.Fatalf("Search returned %v after %d calls, want the callback's error after 7", err, calls)
	}
	// The callback may use the connector even with a pool of one.
	c1 := newConnector(t, func() Config { cfg := testConfig(s, base); cfg.PoolSize = 1; return cfg }())
	err = c1.Search(ctx, personClass, connector.SearchOptions{PageSize: 4}, func(o connector.Object) error {
		_, err := c1.Get(ctx, personClass, connector.Identifiers{UID: o.ID.UID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// By name.
	var one []connector.Object
	err = c.Search(ctx, personClass, connector.SearchOptions{Name: names[3]}, func(o connector.Object) error {
		one = append(one, o)
		return nil
	})
	if err != nil || len(one) != 1 || one[0].ID.Name != names[3] {
		t.Fatalf("search by name: %v %v", one, err)
	}
	err = c.Search(ctx, personClass, connector.SearchOptions{Name: "uid=nobody," + base}, func(o connector.Object) error {
		t.Errorf("unexpected %v", o)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A cancelled context stops the search.
	cctx, cancel := context.WithCancel(ctx)
	err = c.Search(cctx, personClass, connector.SearchOptions{PageSize: 2}, func(connector.Object) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("search after cancel: %v", err)
	}
}

func TestUnknownClassAndBadNames(t *testing.T) {
	t.Parallel()
	c, _, base := setup(t)
	ctx := context.Background()
	if _, err := c.Add(ctx, "nope", person("x")); catOf(t, err) != connector.CategorySchema || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown class: %v", err)
	}
	for _, name := range []string{"not a dn", "uid=x,dc=elsewhere,dc=com", base} {
		if _, err := c.Get(ctx, personClass, connector.Identifiers{Name: name}); catOf(t, err) != connector.CategorySchema {
			t.Fatalf("Get %q: %v, want schema", name, err)
		}
	}
	if _, err := c.Get(ctx, personClass, connector.Identifiers{}); catOf(t, err) != connector.CategorySchema {
		t.Fatalf("Get without identifiers: %v", err)
	}
	if _, err := c.Add(ctx, personClass, connector.Attributes{"cn": {"x"}, "sn": {"y"}}); catOf(t, err) != connector.CategorySchema {
		t.Fatalf("add without naming attribute: %v", err)
	}
	if _, err := c.Add(ctx, personClass, connector.Attributes{"uid": {"x", "y"}, "cn": {"x"}, "sn": {"y"}}); catOf(t, err) != connector.CategorySchema {
		t.Fatalf("add with two naming values: %v", err)
	}
	if _, err := c.Add(ctx, personClass, connector.Attributes{"uid": {"x"}, "bad name!": {"v"}}); catOf(t, err) != connector.CategorySchema {
		t.Fatalf("bad attribute name: %v", err)
	}
	if _, err := c.Add(ctx, personClass, connector.Attributes{"uid": {"x"}, "cn": {"x"}, "sn": {"y"}, "noSuchAttribute": {"v"}}); catOf(t, err) != connector.CategorySchema {
		t.Fatalf("undefined attribute: %v", err)
	}
	if _, err := c.Add(ctx, personClass, connector.Attributes{"uid": {"x"}, "cn": {"x"}}); catOf(t, err) != connector.CategorySchema {
		t.Fatalf("missing required sn: %v", err)
	}
}

func TestModifyWithoutChanges(t *testing.T) {
	t.Parallel()
	c, _, base := setup(t)
	ctx := context.Background()
	res, err := c.Add(ctx, personClass, person("still"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []connector.Identifiers{res.ID, {Name: res.ID.Name}, {UID: res.ID.UID}} {
		if got, err := c.Modify(ctx, personClass, id, nil); err != nil || got.ID.Name != res.ID.Name {
			t.Fatalf("empty modify of %+v: %+v %v", id, got, err)
		}
	}
	if _, err := c.Modify(ctx, personClass, connector.Identifiers{Name: "uid=gone," + base}, nil); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("empty modify of a missing object: %v", err)
	}
}

func TestAddObjectClasses(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ctx := context.Background()
	// The caller's object classes are kept, and the class's are added.
	attrs := person("classy")
	attrs["objectClass"] = []string{"top", "person", "organizationalPerson"}
	res, err := c.Add(ctx, personClass, attrs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID})
	if err != nil {
		t.Fatal(err)
	}
	for _, oc := range []string{"inetOrgPerson", "organizationalPerson", "person", "top"} {
		if !slices.ContainsFunc(got.Attributes["objectClass"], func(s string) bool { return strings.EqualFold(s, oc) }) {
			t.Errorf("objectClass %v lacks %s", got.Attributes["objectClass"], oc)
		}
	}
}
