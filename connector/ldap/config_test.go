package ldap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

const secret = "s3cr3t-Pa55word-xyzzy"

func validConfig() Config {
	return Config{
		URL: "ldap://127.0.0.1:1/", BindDN: "cn=admin,dc=example,dc=com", BindPassword: secret,
		Classes: map[connector.ObjectClass]ClassConfig{
			"person": {BaseDN: "ou=people,dc=example,dc=com", LDAPObjectClasses: []string{"inetOrgPerson"}, NamingAttribute: "uid"},
		},
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := validConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no URL", func(c *Config) { c.URL = "" }, "URL is empty"},
		{"bad scheme", func(c *Config) { c.URL = "http://x/" }, "scheme"},
		{"no host", func(c *Config) { c.URL = "ldap:///" }, "no host"},
		{"unparsable URL", func(c *Config) { c.URL = "ldap://[::1" }, "does not parse"},
		{"credentials in URL", func(c *Config) { c.URL = "ldap://u:" + secret + "@h/" }, "credentials"},
		{"StartTLS with ldaps", func(c *Config) { c.URL = "ldaps://h/"; c.TLS.StartTLS = true }, "TLS.StartTLS"},
		{"password without DN", func(c *Config) { c.BindDN = "" }, "BindDN is empty"},
		{"DN without password", func(c *Config) { c.BindPassword = "" }, "BindPassword is empty"},
		{"bad bind DN", func(c *Config) { c.BindDN = "nonsense" }, "BindDN"},
		{"negative dial timeout", func(c *Config) { c.DialTimeout = -1 }, "DialTimeout"},
		{"negative op timeout", func(c *Config) { c.OpTimeout = -1 }, "OpTimeout"},
		{"negative page size", func(c *Config) { c.PageSize = -1 }, "PageSize"},
		{"negative pool size", func(c *Config) { c.PoolSize = -1 }, "PoolSize"},
		{"unknown live sync", func(c *Config) { c.LiveSync = "syncrepl" }, "LiveSync"},
		{"bad access log base", func(c *Config) { c.LiveSync = LiveSyncAccessLog; c.AccessLogBase = "x" }, "AccessLogBase"},
		{"no classes", func(c *Config) { c.Classes = nil }, "Classes is empty"},
		{"empty class name", func(c *Config) { c.Classes[""] = c.Classes["person"] }, "empty object class"},
		{"no base", func(c *Config) {
			c.Classes["person"] = ClassConfig{LDAPObjectClasses: []string{"x"}, NamingAttribute: "uid"}
		}, "BaseDN is empty"},
		{"bad base", func(c *Config) {
			c.Classes["person"] = ClassConfig{BaseDN: "zzz", LDAPObjectClasses: []string{"x"}, NamingAttribute: "uid"}
		}, "BaseDN \"zzz\""},
		{"no object classes", func(c *Config) { c.Classes["person"] = ClassConfig{BaseDN: "o=x", NamingAttribute: "uid"} }, "LDAPObjectClasses is empty"},
		{"bad object class", func(c *Config) {
			c.Classes["person"] = ClassConfig{BaseDN: "o=x", LDAPObjectClasses: []string{"a)(b"}, NamingAttribute: "uid"}
		}, "LDAPObjectClasses"},
		{"no naming attribute", func(c *Config) { c.Classes["person"] = ClassConfig{BaseDN: "o=x", LDAPObjectClasses: []string{"x"}} }, "NamingAttribute is empty"},
		{"bad naming attribute", func(c *Config) {
			c.Classes["person"] = ClassConfig{BaseDN: "o=x", LDAPObjectClasses: []string{"x"}, NamingAttribute: "u=id"}
		}, "NamingAttribute"},
		{"bad UID attribute", func(c *Config) {
			c.Classes["person"] = ClassConfig{BaseDN: "o=x", LDAPObjectClasses: []string{"x"}, NamingAttribute: "uid", UIDAttribute: "*"}
		}, "UIDAttribute"},
		{"bad attributes", func(c *Config) {
			c.Classes["person"] = ClassConfig{BaseDN: "o=x", LDAPObjectClasses: []string{"x"}, NamingAttribute: "uid", Attributes: []string{"a b"}}
		}, "Attributes"},
		{"bad scope", func(c *Config) {
			c.Classes["person"] = ClassConfig{BaseDN: "o=x", LDAPObjectClasses: []string{"x"}, NamingAttribute: "uid", Scope: "deep"}
		}, "Scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			cfg.Classes = map[connector.ObjectClass]ClassConfig{"person": cfg.Classes["person"]}
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error contains the password: %v", err)
			}
			if _, err := New(cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	// Every problem at once.
	err := Config{PoolSize: -1}.Validate()
	for _, want := range []string{"URL", "Classes", "PoolSize"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of an empty config = %v, want it to name %s", err, want)
		}
	}
}

func TestConfigRedaction(t *testing.T) {
	t.Parallel()
	cfg := validConfig()
	cfg.Logger = slog.Default()
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg)
	type wrapper struct{ Cfg Config }
	outputs := []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%s", cfg),
		fmt.Sprintf("%q", cfg), fmt.Sprintf("%x", cfg), fmt.Sprintf("%d", cfg), fmt.Sprint(cfg), fmt.Sprint(&cfg),
		fmt.Sprintf("%+v", wrapper{cfg}), fmt.Sprintf("%#v", wrapper{cfg}), cfg.String(), cfg.GoString(),
		logged.String(),
	}
	for i, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("output %d shows the password: %s", i, out)
		}
	}
	if !strings.Contains(outputs[1], redacted) || !strings.Contains(outputs[1], "cn=admin,dc=example,dc=com") {
		t.Errorf("%%+v should show the bind DN and mark the password: %s", outputs[1])
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Connection refused on port 1: the error names the server, not the password.
	_, err = c.Get(context.Background(), "person", connector.Identifiers{Name: "uid=x,ou=people,dc=example,dc=com"})
	if catOf(t, err) != connector.CategoryNotSent {
		t.Fatalf("refused: %v", err)
	}
	for _, out := range []string{fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(out, secret) {
			t.Errorf("error shows the password: %s", out)
		}
	}
	// scrub hides a password a server might echo.
	echoed := scrub(fmt.Errorf("server said: bad password %s", secret), secret)
	if strings.Contains(echoed.Error(), secret) || !strings.Contains(echoed.Error(), redacted) {
		t.Errorf("scrub: %v", echoed)
	}
	if scrub(nil, secret) != nil {
		t.Error("scrub(nil)")
	}
}

func TestTLSConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := validConfig()
	cfg.URL = "ldaps://ldap.example.com/"
	cfg.TLS.CAFile = filepath.Join(dir, "missing.pem")
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Fatalf("missing CA file: %v", err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.TLS.CAFile = junk
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Fatalf("junk CA file: %v", err)
	}
	cfg.TLS.CAFile = ""
	cfg.TLS.ServerName = "other.example.com"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.tls.ServerName != "other.example.com" || c.tls.InsecureSkipVerify || c.hostPort != "ldap.example.com:636" {
		t.Fatalf("tls %+v hostPort %s", c.tls, c.hostPort)
	}
}

func TestTLSAgainstPlainServer(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	ctx := context.Background()
	// ldaps:// to a plain listener: the handshake fails, nothing was sent.
	cfg := testConfig(s, s.PeopleDN)
	cfg.URL = strings.Replace(s.URL, "ldap://", "ldaps://", 1)
	c := newConnector(t, cfg)
	if err := c.Test(ctx); catOf(t, err) != connector.CategoryNotSent {
		t.Fatalf("ldaps to a plain server: %v", err)
	}
	// StartTLS to a server without TLS configured: refused before any operation.
	cfg = testConfig(s, s.PeopleDN)
	cfg.TLS.StartTLS = true
	c = newConnector(t, cfg)
	err := c.Test(ctx)
	if err == nil {
		t.Fatal("StartTLS succeeded on a server without TLS")
	}
	if cat := catOf(t, err); cat != connector.CategoryNotSent && cat != connector.CategoryConfiguration {
		t.Fatalf("StartTLS refused: %v", err)
	}
	if !errors.Is(err, connector.ErrNotSent) && !errors.Is(err, connector.ErrConfiguration) {
		t.Fatal(err)
	}
}
