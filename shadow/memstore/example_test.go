package memstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// A host stores a shadow, records a failed modify as a retry due in ten
// minutes, and a refresh later finds it among the due shadows.
func Example() {
	ctx := context.Background()
	clk := connector.NewFakeClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	store := memstore.New(memstore.Options{Clock: clk})

	sh := &shadow.Shadow{
		ResourceID: "ldap", Class: "inetOrgPerson",
		UID: "6f1c", Name: "uid=ada,ou=people", Exists: true,
		Origin:     shadow.OriginAssigned,
		Attributes: connector.Attributes{"mail": {"ada@example.org"}},
	}
	if err := store.Create(ctx, sh); err != nil {
		fmt.Println(err)
		return
	}

	sh.Pending = append(sh.Pending, shadow.PendingOperation{
		ID: sh.NextOperationID(),
		Delta: connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{
			{Op: connector.Replace, Name: "mail", Values: []string{"ada@example.com"}},
		}},
		Type: shadow.OpRetry, Status: shadow.StatusPendingExecution, Result: shadow.ResultInProgress,
		Attempt: 1, RequestedAt: clk.Now(), NextAttemptAt: clk.Now().Add(10 * time.Minute),
	})
	sh.NextDue = clk.Now().Add(10 * time.Minute)
	if err := store.Update(ctx, sh); err != nil { // sh.Version is now 2
		fmt.Println(err)
		return
	}

	due := shadow.Query{DueBy: clk.Now(), Unfinished: true}
	now, _ := store.Count(ctx, due)
	clk.Advance(10 * time.Minute)
	due.DueBy = clk.Now()
	later, _ := store.List(ctx, due)
	fmt.Println("due at once:", now)
	fmt.Println("due ten minutes later:", len(later), later[0].Name, later[0].Version, later[0].State())
	// Output:
	// due at once: 0
	// due ten minutes later: 1 uid=ada,ou=people 2 live
}
