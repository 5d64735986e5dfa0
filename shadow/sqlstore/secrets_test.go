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
	// The password goes into the DSN in its own form: a URL's user info,
	// or one more keyword/value pair.
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.User = url.UserPassword(u.User.Username(), pw)
		dsn = u.String()
	} else {
		dsn += " password=" + pw
	}
	st, err := OpenPostgres(context.Background(), dsn, Options{})
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
