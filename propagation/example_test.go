package propagation_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// Operation grouping on a slow resource: ten changes to one account within
// the ten-minute grouping interval are queued, then the propagation task
// executes them merged, as one call. A fake clock stands in for the ten
// minutes.
func Example() {
	ctx := context.Background()
	clock := connector.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	store := memstore.New(memstore.Options{Clock: clock})
	slow := memconn.New(memconn.Options{Clock: clock})
	settings := consistency.DefaultSettings()
	settings.OperationGroupingInterval = 10 * time.Minute
	engine, err := consistency.New(consistency.Config{Store: store, Clock: clock,
		Resources: []consistency.Resource{{ID: "slow", Connector: slow, Settings: &settings}}})
	if err != nil {
		log.Fatal(err)
	}

	out, err := engine.Add(ctx, consistency.AddRequest{ResourceID: "slow", Class: "account", Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("add:", out.Status)
	for i := 1; i <= 9; i++ {
		clock.Advance(time.Minute)
		_, err := engine.Modify(ctx, out.Shadow.ID, []connector.AttributeDelta{
			{Op: connector.AddValues, Name: "group", Values: []string{fmt.Sprintf("g%d", i)}}})
		if err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("calls so far:", slow.Calls(memconn.CallAdd)+slow.Calls(memconn.CallModify))

	task, err := propagation.New(propagation.Config{Engine: engine,
		Progress: func(p propagation.Progress) { fmt.Printf("propagated %d of %d shadows\n", p.Done, p.Total) }})
	if err != nil {
		log.Fatal(err)
	}
	clock.Advance(time.Minute) // the add is ten minutes old
	res, err := task.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("operations %d, calls %d\n", res.Total.Operations, res.Total.Calls)
	alice, _ := slow.ObjectByName("account", "alice")
	fmt.Println("groups:", len(alice.Attributes["group"]), "adds:", slow.Calls(memconn.CallAdd), "modifies:", slow.Calls(memconn.CallModify))
	// Output:
	// add: queued
	// calls so far: 0
	// propagated 1 of 1 shadows
	// operations 10, calls 1
	// groups: 9 adds: 1 modifies: 0
}

// One task for every resource a selector picks, decided at the start of
// each run (the multi-resource task).
func ExampleConfig_selector() {
	settings := consistency.DefaultSettings()
	settings.OperationGroupingInterval = 10 * time.Minute
	var resources []consistency.Resource
	for _, id := range []string{"badge-system", "hr", "mainframe"} {
		resources = append(resources, consistency.Resource{ID: id, Connector: memconn.New(memconn.Options{}), Settings: &settings})
	}
	engine, err := consistency.New(consistency.Config{Store: memstore.New(memstore.Options{}), Resources: resources})
	if err != nil {
		log.Fatal(err)
	}
	manual := map[string]bool{"badge-system": true, "mainframe": true}
	task, err := propagation.New(propagation.Config{Engine: engine,
		Selector: func(id string) bool { return manual[id] }})
	if err != nil {
		log.Fatal(err)
	}
	res, err := task.Run(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("shadows examined:", res.Total.Examined)
	// Output:
	// shadows examined: 0
}
