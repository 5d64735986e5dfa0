package umbra_test

import (
	"context"
	"fmt"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// Example is the README's wiring example: a store, a resource, the engine,
// and one account provisioned — then the same while the resource is down.
func Example() {
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	resource := memconn.New(memconn.Options{})
	engine, err := consistency.New(consistency.Config{
		Store:     store,
		Resources: []consistency.Resource{{ID: "hr", Connector: resource}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := engine.Add(ctx, consistency.AddRequest{
		ResourceID: "hr", Class: "account", Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}},
	})
	fmt.Println(out.Status, err)

	resource.Down()
	out, err = engine.Add(ctx, consistency.AddRequest{
		ResourceID: "hr", Class: "account", Name: "bob",
		Attributes: connector.Attributes{"uid": {"bob"}},
	})
	fmt.Println(out.Status, err, out.Shadow.Pending[0].Type)
	// Output:
	// done <nil>
	// pending <nil> retry
}
