package sqlstore

import (
	"fmt"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

// TestFindSQLAnonymousLists: on SQLite the identifier lists of
// FindByIdentifiers are anonymous parameters, bound without a lookup in
// the statement's list of numbered ones (which made binding 256 values
// cost as much as the index lookups).
func TestFindSQLAnonymousLists(t *testing.T) {
	s := newSQLite(t, connector.NewFakeClock(t0))
	var uids, names []string
	for i := range 100 {
		uids, names = append(uids, fmt.Sprintf("u%d", i)), append(names, fmt.Sprintf("n%d", i))
	}
	stmt, args := s.findSQL("r1", "account", uids, names)
	if n := strings.Count(stmt, "$"); n != 2 {
		t.Errorf("statement has %d numbered parameters, want 2 (resource and class): %s", n, stmt)
	}
	if n := strings.Count(stmt, "?"); n != len(args)-2 || n != 256 {
		t.Errorf("statement has %d anonymous parameters for %d arguments, want 256", n, len(args))
	}
}
