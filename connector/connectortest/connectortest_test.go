package connectortest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/connectortest"
	"github.com/umbra-idm/umbra/connector/memconn"
)

// A mutant is memconn with one bug a real connector could have. The suite
// must catch every one: TestSuiteCatchesMutants runs the suite against each
// in a child process and expects the named case to fail.
type mutant struct {
	*memconn.Conn
	bug string

	mu    sync.Mutex
	cache map[string]connector.Attributes
}

var mutants = map[string]string{
	"wildcard-search":   "HostileSearch",    // Name used as an unescaped pattern
	"delete-missing-ok": "Missing",          // delete of a missing object reports success
	"fetch-from-start":  "LiveSyncChanges",  // the token is ignored
	"stale-rename":      "Rename",           // a rename reports the old Name
	"generic-duplicate": "AddDuplicate",     // a name conflict is not categorized
	"ignores-context":   "ContextCancelled", // calls do not stop when ctx is done
	"first-value-only":  "ModifyValues",     // a multi-value add keeps one value
	"lenient-token":     "LiveSyncBadToken", // a malformed token means the start
	"shared-get":        "AddGet",           // Get hands out its own map
	"resume-skips":      "LiveSyncPreciseResume",
}

func (m *mutant) Search(ctx context.Context, cl connector.ObjectClass, opts connector.SearchOptions, fn func(connector.Object) error) error {
	if m.bug != "wildcard-search" || opts.Name == "" {
		return m.Conn.Search(ctx, cl, opts, fn)
	}
	pattern := opts.Name
	return m.Conn.Search(ctx, cl, connector.SearchOptions{PageSize: opts.PageSize}, func(o connector.Object) error {
		if ok, err := path.Match(pattern, o.ID.Name); (err == nil && ok) || o.ID.Name == pattern {
			return fn(o)
		}
		return nil
	})
}

func (m *mutant) Delete(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers) (connector.Result, error) {
	res, err := m.Conn.Delete(ctx, cl, id)
	if m.bug == "delete-missing-ok" && errors.Is(err, connector.ErrNotFound) {
		return connector.Result{}, nil
	}
	return res, err
}

func (m *mutant) FetchChanges(ctx context.Context, cl connector.ObjectClass, from connector.Token, max int) (connector.ChangeBatch, error) {
	switch m.bug {
	case "fetch-from-start":
		from = ""
	case "lenient-token":
		if b, err := m.Conn.FetchChanges(ctx, cl, from, max); err == nil {
			return b, nil
		}
		from = ""
	case "resume-skips":
		b, err := m.Conn.FetchChanges(ctx, cl, from, max+1)
		if err == nil && len(b.Changes) > 1 && from != "" {
			b.Changes = b.Changes[1:]
		}
		return b, err
	}
	return m.Conn.FetchChanges(ctx, cl, from, max)
}

func (m *mutant) Modify(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
	if m.bug == "first-value-only" {
		changes = connector.Delta{Changes: changes}.Clone().Changes
		for i := range changes {
			if changes[i].Op == connector.AddValues && len(changes[i].Values) > 1 {
				changes[i].Values = changes[i].Values[:1]
			}
		}
	}
	res, err := m.Conn.Modify(ctx, cl, id, changes)
	if m.bug == "stale-rename" && err == nil {
		res.ID = id
	}
	return res, err
}

func (m *mutant) Add(ctx context.Context, cl connector.ObjectClass, attrs connector.Attributes) (connector.Result, error) {
	res, err := m.Conn.Add(ctx, cl, attrs)
	if m.bug == "generic-duplicate" && errors.Is(err, connector.ErrAlreadyExists) {
		return res, fmt.Errorf("constraint violation")
	}
	return res, err
}

func (m *mutant) Get(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers) (connector.Object, error) {
	if m.bug == "ignores-context" {
		ctx = context.Background()
	}
	o, err := m.Conn.Get(ctx, cl, id)
	if m.bug == "shared-get" && err == nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.cache == nil {
			m.cache = map[string]connector.Attributes{}
		}
		if cached, ok := m.cache[o.ID.UID]; ok {
			o.Attributes = cached
		} else {
			m.cache[o.ID.UID] = o.Attributes
		}
	}
	return o, err
}

func harness(opts memconn.Options, wrap func(*memconn.Conn) connector.Connector) connectortest.Harness {
	return connectortest.Harness{
		Class: "account",
		New: func(t *testing.T) connector.Connector {
			return wrap(memconn.New(opts))
		},
		NewAttributes: func(i int) connector.Attributes {
			return connector.Attributes{
				"uid":         {fmt.Sprintf("user-%d", i)},
				"description": {fmt.Sprintf("person %d", i)},
				"mail":        {fmt.Sprintf("user-%d@example.com", i)},
			}
		},
		NamingAttribute:      "uid",
		ModifiableAttribute:  "description",
		MultiValuedAttribute: "mail",
		CompleteAsync: func(c connector.Connector, ref string) error {
			return c.(interface{ CompleteAsync(string) error }).CompleteAsync(ref)
		},
	}
}

var fullCaps = connectortest.Capabilities{Search: true, LiveSync: true, LiveSyncDeletes: true, PreciseTokens: true, Rename: true, ControlBytes: true}

// TestMutant runs the suite against one mutant; only as a child of
// TestSuiteCatchesMutants.
func TestMutant(t *testing.T) {
	bug := os.Getenv("CONNECTORTEST_MUTANT")
	if bug == "" {
		t.Skip("runs only as a child process of TestSuiteCatchesMutants")
	}
	connectortest.Run(t, fullCaps, harness(memconn.Options{PreciseTokens: true}, func(c *memconn.Conn) connector.Connector {
		if bug == "ignores-context" {
			return ignoresContext{c}
		}
		return &mutant{Conn: c, bug: bug}
	}))
}

// ignoresContext drops the caller's context on every call.
type ignoresContext struct{ *memconn.Conn }

func (c ignoresContext) Add(_ context.Context, cl connector.ObjectClass, a connector.Attributes) (connector.Result, error) {
	return c.Conn.Add(context.Background(), cl, a)
}

func (c ignoresContext) Get(_ context.Context, cl connector.ObjectClass, id connector.Identifiers) (connector.Object, error) {
	return c.Conn.Get(context.Background(), cl, id)
}

func TestSuiteCatchesMutants(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	for bug, wantCase := range mutants {
		t.Run(bug, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMutant$", "-test.v")
			cmd.Env = append(os.Environ(), "CONNECTORTEST_MUTANT="+bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a connector with bug %q:\n%s", bug, out)
			}
			if want := "--- FAIL: TestMutant/" + wantCase + " "; !strings.Contains(string(out), want) {
				t.Fatalf("bug %q: case %s did not fail:\n%s", bug, wantCase, out)
			}
		})
	}
}

// TestHealthy runs the suite against plain memconn in the configurations
// the mutants do not cover.
func TestHealthy(t *testing.T) {
	t.Parallel()
	same := func(c *memconn.Conn) connector.Connector { return c }
	caps := fullCaps
	caps.Async = true
	connectortest.Run(t, caps, harness(memconn.Options{PreciseTokens: true, Async: true}, same))
	minimal := connectortest.Capabilities{}
	connectortest.Run(t, minimal, harness(memconn.Options{}, same))
}
