package manual_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/manual"
)

// Every write becomes a ticket file for a person; the operation is done
// when the person marks the ticket done.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tickets")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sink, err := manual.NewFileSink(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := manual.New(manual.Options{Sink: sink, NewUID: func() string { return "badge-0001" }})
	if err != nil {
		log.Fatal(err)
	}

	res, err := conn.Add(ctx, "badge", connector.Attributes{"uid": {"alice"}, "door": {"main", "lab"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ticket:", res.Async)
	st, _ := conn.OperationStatus(ctx, res.Async)
	fmt.Println("state:", st.State)

	// The person creates the badge and closes the ticket (or edits
	// "status" in the file).
	if err := manual.MarkDone(dir, res.Async); err != nil {
		log.Fatal(err)
	}
	st, _ = conn.OperationStatus(ctx, res.Async)
	fmt.Println("state:", st.State, st.ID.UID, st.ID.Name)
	badge, _ := conn.Get(ctx, "badge", connector.Identifiers{Name: "alice"})
	fmt.Println("doors:", badge.Attributes["door"])
	// Output:
	// ticket: T000000001
	// state: in progress
	// state: done badge-0001 alice
	// doors: [lab main]
}
