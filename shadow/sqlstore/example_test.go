package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// A single process keeps its shadows in an SQLite file; a refresh worker
// claims the due ones.
func ExampleOpenSQLite() {
	dir, _ := os.MkdirTemp("", "umbra-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	clk := connector.NewFakeClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))

	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "umbra.db"), sqlstore.Options{Clock: clk})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	sh := &shadow.Shadow{ResourceID: "ldap", Class: "inetOrgPerson", Name: "uid=ada", Origin: shadow.OriginAssigned,
		Pending: []shadow.PendingOperation{{ID: 1, Type: shadow.OpRetry, Status: shadow.StatusPendingExecution,
			Result: shadow.ResultInProgress, Delta: connector.Delta{Type: connector.DeltaAdd}, RequestedAt: clk.Now()}},
		NextDue: clk.Now().Add(30 * time.Minute)}
	if err := store.Create(ctx, sh); err != nil {
		fmt.Println(err)
		return
	}

	due := shadow.Query{Unfinished: true, DueBy: clk.Now()}
	batch, _ := store.Claim(ctx, due, "worker-1", time.Minute, 100)
	fmt.Println("due now:", len(batch))

	clk.Advance(30 * time.Minute)
	batch, _ = store.Claim(ctx, shadow.Query{Unfinished: true, DueBy: clk.Now()}, "worker-1", time.Minute, 100)
	fmt.Println("due after 30 min:", len(batch), batch[0].Name, "version", batch[0].Version)
	// Output:
	// due now: 0
	// due after 30 min: 1 uid=ada version 1
}
