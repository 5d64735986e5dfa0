package livesync_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/livesync/tokenstoretest"
)

func TestMemoryTokenStoreConformance(t *testing.T) {
	t.Parallel()
	tokenstoretest.Run(t, func(t *testing.T) livesync.TokenStore {
		return livesync.NewMemoryTokenStore()
	})
}

// Entries set aside at the same time keep the order they were first set
// aside in, a replaced one included.
func TestMemoryTokenStoreTiesKeepInsertionOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := livesync.NewMemoryTokenStore()
	key := livesync.TokenKey{ResourceID: "r", Class: "c", Task: "t"}
	at := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"b", "a", "c", "a"} {
		if err := s.SetAside(ctx, key, livesync.SetAsideChange{ID: id, SetAsideAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.SetAsideChanges(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range list {
		got = append(got, c.ID)
	}
	if fmt.Sprint(got) != "[b a c]" {
		t.Fatalf("order %v, want [b a c]", got)
	}
}
