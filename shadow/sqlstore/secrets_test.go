package sqlstore

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/internal/testsvc"
)

// TestStorePrintsNoPassword opens a PostgreSQL store with a password in
// the DSN (the trust-auth test server ignores it) and prints it, and a
// struct holding it, with every verb: the driver state under the
// connection pool holds the password, and must never be walked.
func TestStorePrintsNoPassword(t *testing.T) {
	t.Parallel()
	const pw = "PgPw-never-printed-5e1a"
	dsn := testsvc.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" {
		t.Skipf("the test DSN is not a URL; cannot add a password to it")
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	st, err := OpenPostgres(context.Background(), u.String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	holder := struct{ s *Store }{st}
	for _, v := range []any{st, holder, &holder} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x"} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, pw) {
				t.Errorf("%s of %T shows the password: %s", verb, v, s)
			}
		}
	}
	if s := fmt.Sprint(st); !strings.Contains(s, "PostgreSQL") {
		t.Errorf("the store prints as %q; want its database kind", s)
	}
}
