package compensation_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/compensation"
	"github.com/umbra-idm/umbra/connector"
)

// users is a host's managed-object store, in memory.
type users map[string]connector.Attributes

func (u users) Put(_ context.Context, id string, obj connector.Attributes) error {
	u[id] = obj
	return nil
}

func (u users) Delete(_ context.Context, id string) error {
	delete(u, id)
	return nil
}

// An update of a user reaches the directory, then fails on the HR system:
// the user is put back to its old value and the directory is reverted.
func Example() {
	old := connector.Attributes{"title": {"Engineer"}}
	changed := connector.Attributes{"title": {"Senior Engineer"}}

	store := users{"jdoe": changed} // the host has stored the change
	directory := map[string]string{"jdoe": "Engineer"}

	s, err := compensation.New(compensation.Config{
		Store: store,
		Targets: []compensation.Target{
			{Name: "directory", Sync: func(ctx context.Context, c compensation.Change) error {
				fmt.Printf("directory: %s %s (compensation: %t)\n", c.Action.Notify(), c.New.Get("title"), compensation.IsCompensation(ctx))
				directory[c.ID] = c.New.Get("title")
				return nil
			}},
			{Name: "hr", Sync: func(ctx context.Context, c compensation.Change) error {
				if compensation.IsCompensation(ctx) {
					fmt.Println("hr: revert accepted")
					return nil
				}
				return connector.NewError(connector.CategoryPolicy, "update", errors.New("title needs approval"))
			}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	rep, err := s.Sync(context.Background(), compensation.Change{Action: compensation.Update, ID: "jdoe", Old: old, New: changed})
	fmt.Println("error:", err)
	for _, t := range rep.Targets {
		fmt.Printf("%-9s %s\n", t.Name, t.Outcome)
	}
	fmt.Println("store:", store["jdoe"].Get("title"), "| directory:", directory["jdoe"], "| in step:", rep.InStep())
	// Output:
	// directory: notifyUpdate Senior Engineer (compensation: false)
	// hr: revert accepted
	// directory: notifyUpdate Engineer (compensation: true)
	// error: compensation: update of "jdoe" failed: target "hr": notifyUpdate: update: policy: title needs approval; change reverted; no target out of step
	// directory reverted
	// hr        reverted
	// store: Engineer | directory: Engineer | in step: true
}
