package sqlstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/testsvc"
)

// dialects are the two databases every dialect-independent test runs on.
var dialects = []struct {
	name string
	open func(t testing.TB, clk connector.Clock) *Store
}{
	{"sqlite", newSQLite},
	{"postgres", newPostgres},
}

func newSQLite(t testing.TB, clk connector.Clock) *Store {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "umbra.db"), Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPostgres(t testing.TB, clk connector.Clock) *Store {
	t.Helper()
	s, err := OpenPostgres(context.Background(), testsvc.PostgresDSN(t), Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
