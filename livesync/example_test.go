package livesync_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// A live-sync task over an in-memory resource: the first run takes the
// resource's current position, later runs process what changed since.
func Example() {
	ctx := context.Background()
	conn := memconn.New(memconn.Options{PreciseTokens: true})
	conn.Put("account", connector.Attributes{"uid": {"old"}}) // before the task: never replayed

	task, err := livesync.New(livesync.Config{
		ResourceID: "hr",
		Class:      "account",
		Connector:  conn,
		Store:      memstore.New(memstore.Options{}),
		Tokens:     livesync.NewMemoryTokenStore(),
		Handler: func(ctx context.Context, ev livesync.Event) error {
			fmt.Printf("%s %s (shadow before: %v)\n", ev.Change.Type, ev.Change.ID.Name, ev.Before != nil)
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, _ := task.Run(ctx)
	fmt.Println("first run:", res.Processed, "processed, token", res.TokenAfter)

	alice, _ := conn.Put("account", connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}})
	conn.ModifyDirect("account", alice.UID, connector.AttributeDelta{Op: connector.Replace, Name: "mail", Values: []string{"a@example.com"}})
	conn.Remove("account", alice.UID)
	res, _ = task.Run(ctx)
	fmt.Println("second run:", res.Processed, "processed, token", res.TokenAfter)
	// Output:
	// first run: 0 processed, token 1
	// create alice (shadow before: false)
	// modify alice (shadow before: true)
	// delete alice (shadow before: true)
	// second run: 3 processed, token 4
}

// An error policy: a target that is down sets the change aside for the next
// run (at most five attempts); a policy violation is ignored; anything else
// stops the run with the token before the failed change.
func ExampleErrorPolicy() {
	ctx := context.Background()
	conn := memconn.New(memconn.Options{PreciseTokens: true})
	task, _ := livesync.New(livesync.Config{
		ResourceID: "hr",
		Class:      "account",
		Connector:  conn,
		Store:      memstore.New(memstore.Options{}),
		Tokens:     livesync.NewMemoryTokenStore(),
		ErrorPolicy: livesync.ErrorPolicy{Rules: []livesync.ErrorRule{
			{Categories: []connector.Category{connector.CategoryNotSent}, Action: livesync.ActionSetAside, MaxAttempts: 5},
			{Categories: []connector.Category{connector.CategoryPolicy}, Action: livesync.ActionIgnore},
		}},
		Handler: func(ctx context.Context, ev livesync.Event) error {
			if ev.Change.ID.Name == "bob" && ev.Attempt == 0 {
				return connector.NewError(connector.CategoryNotSent, "provision", errors.New("target down"))
			}
			return nil
		},
	})
	task.Run(ctx) // first run: takes the current token
	conn.Put("account", connector.Attributes{"uid": {"alice"}})
	conn.Put("account", connector.Attributes{"uid": {"bob"}})
	res, _ := task.Run(ctx)
	fmt.Println("processed", res.Processed, "set aside", res.SetAside)
	aside, _ := task.SetAsideChanges(ctx)
	fmt.Println(aside[0].Change.ID.Name, "attempts", aside[0].Attempts)
	res, _ = task.Run(ctx)
	fmt.Println("retried", res.Retried, "processed", res.Processed)
	// Output:
	// processed 1 set aside 1
	// bob attempts 1
	// retried 1 processed 1
}
