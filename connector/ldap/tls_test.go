package ldap

import (
	"context"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/testsvc"
)

func TestTLSConnections(t *testing.T) {
	t.Parallel()
	sharedSlapd(t)
	s := testsvc.StartSlapdWith(t, testsvc.SlapdOptions{TLS: true})
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr connector.Category // 0 (generic) = success expected
		errText string
	}{
		{name: "ldaps with the CA", mutate: func(c *Config) { c.URL = s.LDAPSURL; c.TLS.CAFile = s.CAFile }},
		{name: "StartTLS with the CA", mutate: func(c *Config) { c.TLS.StartTLS = true; c.TLS.CAFile = s.CAFile }},
		{name: "ldaps without verification", mutate: func(c *Config) { c.URL = s.LDAPSURL; c.TLS.InsecureSkipVerify = true }},
		{name: "ldaps with an unknown CA", mutate: func(c *Config) { c.URL = s.LDAPSURL },
			wantErr: connector.CategoryNotSent, errText: "certificate"},
		{name: "StartTLS with an unknown CA", mutate: func(c *Config) { c.TLS.StartTLS = true },
			wantErr: connector.CategoryNotSent, errText: "certificate"},
		{name: "ldaps with the wrong server name", mutate: func(c *Config) {
			c.URL = s.LDAPSURL
			c.TLS.CAFile = s.CAFile
			c.TLS.ServerName = "ldap.example.org"
		}, wantErr: connector.CategoryNotSent, errText: "ldap.example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(s, s.PeopleDN)
			tc.mutate(&cfg)
			c := newConnector(t, cfg)
			err := c.Test(ctx)
			if tc.wantErr == connector.CategoryGeneric {
				if err != nil {
					t.Fatal(err)
				}
				res, err := c.Add(ctx, personClass, person(strings.ReplaceAll(tc.name, " ", "-")))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if catOf(t, err) != tc.wantErr || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("Test = %v, want %v mentioning %q", err, tc.wantErr, tc.errText)
			}
		})
	}
}
