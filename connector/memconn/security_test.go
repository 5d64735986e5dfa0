package memconn_test

import (
	"context"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
)

// TestLongAndBinaryValues: 100 KB values and names, NUL and invalid UTF-8
// come back exactly, and a search by such a name (or by a prefix of it)
// finds only its own object.
func TestLongAndBinaryValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{})
	long := strings.Repeat("0123456789abcdef", 100<<10/16)
	names := []string{long, "nul\x00name", "bad \xff\xfe", "*", `*)(uid=*`, `' OR 1=1 --`}
	ids := map[string]connector.Identifiers{}
	for _, n := range names {
		res, err := c.Add(ctx, "account", connector.Attributes{"uid": {n}, "description": {long + n}})
		if err != nil {
			t.Fatalf("Add %.20q: %v", n, err)
		}
		ids[n] = res.ID
	}
	for _, n := range append(names, long[:len(long)-1], "nul", "bad ") {
		var found []connector.Object
		err := c.Search(ctx, "account", connector.SearchOptions{Name: n}, func(o connector.Object) error {
			found = append(found, o)
			return nil
		})
		if err != nil {
			t.Fatalf("Search %.20q: %v", n, err)
		}
		id, exists := ids[n]
		switch {
		case !exists && len(found) != 0:
			t.Errorf("Search by %.20q found %d objects; no object has that name", n, len(found))
		case exists && (len(found) != 1 || found[0].ID.UID != id.UID):
			t.Errorf("Search by %.20q found %d objects; want only %s", n, len(found), id.UID)
		case exists && found[0].Attributes.Get("description") != long+n:
			t.Errorf("object %.20q: description read back as %d bytes", n, len(found[0].Attributes.Get("description")))
		}
	}
}
