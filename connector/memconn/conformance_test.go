package memconn_test

import (
	"fmt"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/connectortest"
	"github.com/umbra-idm/umbra/connector/memconn"
)

func harness(opts memconn.Options) connectortest.Harness {
	return connectortest.Harness{
		Class: "account",
		New: func(t *testing.T) connector.Connector {
			return memconn.New(opts)
		},
		NewAttributes: func(i int) connector.Attributes {
			return connector.Attributes{
				"uid":         {fmt.Sprintf("user-%d", i)},
				"cn":          {fmt.Sprintf("User %d", i)},
				"description": {fmt.Sprintf("person %d", i)},
				"mail":        {fmt.Sprintf("user-%d@example.com", i), fmt.Sprintf("u%d@example.org", i)},
			}
		},
		NamingAttribute:      "uid",
		ModifiableAttribute:  "description",
		MultiValuedAttribute: "mail",
		CompleteAsync: func(c connector.Connector, ref string) error {
			return c.(*memconn.Conn).CompleteAsync(ref)
		},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	all := connectortest.Capabilities{Search: true, LiveSync: true, LiveSyncDeletes: true, Rename: true, ControlBytes: true}
	precise := all
	precise.PreciseTokens = true
	async := precise
	async.Async = true
	for _, tc := range []struct {
		name string
		caps connectortest.Capabilities
		opts memconn.Options
	}{
		{"Precise", precise, memconn.Options{PreciseTokens: true}},
		{"Imprecise", all, memconn.Options{}},
		{"Async", async, memconn.Options{PreciseTokens: true, Async: true}},
		{"OmitChangeAttributes", precise, memconn.Options{PreciseTokens: true, OmitChangeAttributes: true, MaxFetch: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			connectortest.Run(t, tc.caps, harness(tc.opts))
		})
	}
}

// TestConformanceSharedResource runs the suite with every case on one
// resource, as a connector to a real server would.
func TestConformanceSharedResource(t *testing.T) {
	t.Parallel()
	shared := memconn.New(memconn.Options{PreciseTokens: true})
	h := harness(memconn.Options{})
	h.New = func(*testing.T) connector.Connector { return shared }
	connectortest.Run(t, connectortest.Capabilities{Search: true, LiveSync: true, LiveSyncDeletes: true, PreciseTokens: true, Rename: true, ControlBytes: true}, h)
}
