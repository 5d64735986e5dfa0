package consistency_test

import (
	"context"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// An add while the resource is down is accepted and postponed; once the
// resource is back and the retry period has passed, a refresh carries it
// out.
func Example() {
	ctx := context.Background()
	clock := connector.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	ldap := memconn.New(memconn.Options{Clock: clock})
	engine, err := consistency.New(consistency.Config{
		Clock:     clock,
		Store:     memstore.New(memstore.Options{Clock: clock}),
		Resources: []consistency.Resource{{ID: "ldap", Connector: ldap}},
	})
	if err != nil {
		panic(err)
	}

	ldap.Down()
	out, err := engine.Add(ctx, consistency.AddRequest{
		ResourceID: "ldap",
		Class:      "account",
		Name:       "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("add:", out.Status)

	ldap.Up()
	clock.Advance(consistency.OperationRetryPeriodDefault)
	res, err := engine.RefreshShadow(ctx, out.Shadow.ID)
	if err != nil {
		panic(err)
	}
	view, err := engine.Get(ctx, out.Shadow.ID, consistency.GetOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("refresh completed:", res.Completed)
	fmt.Println("exists:", view.Exists, view.Attributes.Get("mail"))
	// Output:
	// add: pending
	// refresh completed: 1
	// exists: true alice@example.com
}
