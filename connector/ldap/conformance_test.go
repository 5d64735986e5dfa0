package ldap

import (
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/connectortest"
)

func harness(t *testing.T, strategy LiveSyncStrategy, base func(t *testing.T) string) connectortest.Harness {
	return connectortest.Harness{
		Class:                personClass,
		NamingAttribute:      "uid",
		ModifiableAttribute:  "displayName",
		MultiValuedAttribute: "description",
		New: func(t *testing.T) connector.Connector {
			s := sharedSlapd(t)
			cfg := testConfig(s, base(t))
			cfg.LiveSync = strategy
			return newConnector(t, cfg)
		},
		NewAttributes: func(i int) connector.Attributes {
			return connector.Attributes{
				"objectClass": {"inetOrgPerson"},
				"uid":         {fmt.Sprintf("user%d", i)},
				"cn":          {fmt.Sprintf("User %d", i)},
				"sn":          {"Conformance"},
				"displayName": {fmt.Sprintf("account %d", i)},
			}
		},
		SyncTimeout: 10 * time.Second,
	}
}

// TestConformanceAccessLog runs the connector suite with accesslog live
// sync, every case on one organizational unit (a shared resource and a
// shared change stream).
func TestConformanceAccessLog(t *testing.T) {
	s := sharedSlapd(t)
	ou := newOU(t, s)
	connectortest.Run(t, connectortest.Capabilities{
		LiveSync: true, LiveSyncDeletes: true, PreciseTokens: true, Rename: true, Search: true,
	}, harness(t, LiveSyncAccessLog, func(*testing.T) string { return ou }))
}

// TestConformanceModifyTimestamp runs the suite with modifyTimestamp live
// sync. Each case gets its own organizational unit: a fetch delivers whole
// seconds, and the suite's max of 50 must not fall inside one second.
func TestConformanceModifyTimestamp(t *testing.T) {
	s := sharedSlapd(t)
	connectortest.Run(t, connectortest.Capabilities{
		CreateOrModify: true, LiveSync: true, Rename: true, Search: true,
	}, harness(t, LiveSyncModifyTimestamp, func(t *testing.T) string { return newOU(t, s) }))
}
