package memconn_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
)

// A resource that fails, changes behind the engine's back, and reports what
// happened through live sync.
func Example() {
	ctx := context.Background()
	res := memconn.New(memconn.Options{PreciseTokens: true})

	// The resource is down: the call fails with "not sent" and is counted.
	res.Down()
	_, err := res.Add(ctx, "account", connector.Attributes{"uid": {"alice"}})
	fmt.Println(connector.Classify(err), errors.Is(err, connector.ErrCommunication))
	res.Up()

	// A timeout after the request went out: the add happened anyway.
	res.FailNextAfterApply(1)
	_, err = res.Add(ctx, "account", connector.Attributes{"uid": {"alice"}})
	o, _ := res.ObjectByName("account", "alice")
	fmt.Println(connector.Classify(err), o.ID.UID)

	// Someone renames the account directly on the resource.
	if _, err := res.ModifyDirect("account", o.ID.UID, connector.AttributeDelta{Op: connector.Replace, Name: "uid", Values: []string{"alice2"}}); err != nil {
		panic(err)
	}

	batch, _ := res.FetchChanges(ctx, "account", "", 0)
	for _, ch := range batch.Changes {
		fmt.Printf("%s %s %s (was %q)\n", ch.Token, ch.Type, ch.ID.Name, ch.OldName)
	}
	fmt.Println("adds:", res.Calls(memconn.CallAdd))
	// Output:
	// communication (not sent) true
	// communication (outcome unknown) u-000001
	// 1 create alice (was "")
	// 2 modify alice2 (was "alice")
	// adds: 2
}

// An asynchronous (ticket-driven) resource: writes finish when the test
// says so.
func ExampleConn_CompleteAsync() {
	ctx := context.Background()
	res := memconn.New(memconn.Options{Async: true})
	r, _ := res.Add(ctx, "account", connector.Attributes{"uid": {"bob"}})
	st, _ := res.OperationStatus(ctx, r.Async)
	fmt.Println(st.State, res.Len("account"))

	if err := res.CompleteAsync(r.Async); err != nil {
		panic(err)
	}
	st, _ = res.OperationStatus(ctx, r.Async)
	fmt.Println(st.State, st.ID.Name)
	// Output:
	// in progress 0
	// done bob
}
