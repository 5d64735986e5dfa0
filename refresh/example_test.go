package refresh_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// A resource is down while three accounts are asked for: the engine keeps
// them as pending operations. Once the resource is back and the retry time
// has come, one refresh run creates them. A fake clock stands in for the
// half hour.
func Example() {
	ctx := context.Background()
	clock := connector.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	store := memstore.New(memstore.Options{Clock: clock})
	hr := memconn.New(memconn.Options{Clock: clock})
	engine, err := consistency.New(consistency.Config{Store: store, Clock: clock,
		Resources: []consistency.Resource{{ID: "hr", Connector: hr}}})
	if err != nil {
		log.Fatal(err)
	}

	hr.Down()
	for _, name := range []string{"alice", "bob", "carol"} {
		out, err := engine.Add(ctx, consistency.AddRequest{ResourceID: "hr", Class: "account", Name: name,
			Attributes: connector.Attributes{"uid": {name}}})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(name, out.Status)
	}
	hr.Up()
	clock.Advance(consistency.OperationRetryPeriodDefault)

	task, err := refresh.New(refresh.Config{Engine: engine, Concurrency: 1,
		Progress: func(p refresh.Progress) { fmt.Printf("refreshed %d of %d\n", p.Done, p.Total) }})
	if err != nil {
		log.Fatal(err)
	}
	res, err := task.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("examined %d, completed %d, still pending %d, errors %d\n",
		res.Total.Examined, res.Total.Completed, res.Total.StillPending, res.ErrorCount)
	fmt.Println("accounts on hr:", hr.Len("account"))
	// Output:
	// alice pending
	// bob pending
	// carol pending
	// refreshed 1 of 3
	// refreshed 2 of 3
	// refreshed 3 of 3
	// examined 3, completed 3, still pending 0, errors 0
	// accounts on hr: 3
}

// A recurring refresh: the first run at once, then every ten minutes,
// counted from the start, until Stop. OnRun receives each run's result.
func ExampleTask_Start() {
	clock := connector.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	engine, err := consistency.New(consistency.Config{Store: memstore.New(memstore.Options{Clock: clock}), Clock: clock,
		Resources: []consistency.Resource{{ID: "hr", Connector: memconn.New(memconn.Options{Clock: clock})}}})
	if err != nil {
		log.Fatal(err)
	}
	runs := make(chan refresh.Result, 1)
	task, err := refresh.New(refresh.Config{Engine: engine,
		OnRun: func(r refresh.Result, err error) { runs <- r }})
	if err != nil {
		log.Fatal(err)
	}
	if err := task.Start(context.Background(), 10*time.Minute); err != nil {
		log.Fatal(err)
	}
	defer task.Stop()

	first := <-runs
	fmt.Println("first run at", first.Started.Format("15:04"))
	clock.BlockUntil(1, time.Minute) // the schedule waits for 09:10
	clock.Advance(10 * time.Minute)
	second := <-runs
	fmt.Println("second run at", second.Started.Format("15:04"))
	// Output:
	// first run at 09:00
	// second run at 09:10
}
