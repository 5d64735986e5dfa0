package ldap_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/ldap"
)

// A connector for people in an OpenLDAP directory, with live sync from the
// access log. The password is never printed.
func Example() {
	c, err := ldap.New(ldap.Config{
		URL:          "ldap://ldap.example.com:389/",
		TLS:          ldap.TLSConfig{StartTLS: true, CAFile: "/etc/ssl/certs/example-ca.pem"},
		BindDN:       "cn=umbra,ou=services,dc=example,dc=com",
		BindPassword: "from-a-secret-store",
		Classes: map[connector.ObjectClass]ldap.ClassConfig{
			"account": {
				BaseDN:            "ou=people,dc=example,dc=com",
				LDAPObjectClasses: []string{"inetOrgPerson"},
				NamingAttribute:   "uid",
				// UIDAttribute defaults to entryUUID.
			},
		},
		LiveSync:  ldap.LiveSyncAccessLog, // AccessLogBase defaults to cn=accesslog
		OpTimeout: 10 * time.Second,
		Logger:    slog.Default(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	res, err := c.Add(ctx, "account", connector.Attributes{
		"uid": {"alice"}, "cn": {"Alice Example"}, "sn": {"Example"},
	})
	if err != nil {
		// Categorized: errors.Is(err, connector.ErrCommunication), ...
		fmt.Println(connector.Classify(err))
		return
	}
	fmt.Println(res.ID.Name) // uid=alice,ou=people,dc=example,dc=com
}

// Invalid configurations are refused with every problem named.
func ExampleConfig_Validate() {
	err := ldap.Config{URL: "http://ldap.example.com/", BindDN: "cn=admin,dc=example,dc=com"}.Validate()
	fmt.Println(err)
	// Output:
	// ldap: Config.URL "http://ldap.example.com/": scheme must be ldap or ldaps
	// ldap: Config.BindPassword is empty (an unauthenticated bind is refused)
	// ldap: Config.Classes is empty
}
