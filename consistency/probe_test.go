package consistency_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// slowProbe is memconn whose Test waits until released.
type slowProbe struct {
	*memconn.Conn
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *slowProbe) Test(ctx context.Context) error {
	s.once.Do(func() { close(s.started) })
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Conn.Test(ctx)
}

// While one caller probes a resource marked down, the others wait for the
// probe's answer instead of skipping their work as if it were still down.
func TestConcurrentCallersShareOneProbe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := connector.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	conn := &slowProbe{Conn: memconn.New(memconn.Options{Clock: clk}), started: make(chan struct{}), release: make(chan struct{})}
	store := memstore.New(memstore.Options{Clock: clk})
	e, err := consistency.New(consistency.Config{Store: store, Clock: clk,
		Resources: []consistency.Resource{{ID: "r", Connector: conn}}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Down()
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		o, err := e.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: "account", Name: n, Attributes: connector.Attributes{"uid": {n}}})
		if err != nil || o.Status != consistency.Pending {
			t.Fatalf("add %s while down: %v %v", n, o.Status, err)
		}
		ids = append(ids, o.Shadow.ID)
	}
	conn.Up()
	clk.Advance(31 * time.Minute)
	results := make([]consistency.RefreshResult, len(ids))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[0], _ = e.RefreshShadow(ctx, ids[0]) // probes
	}()
	<-conn.started
	for i := 1; i < len(ids); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = e.RefreshShadow(ctx, ids[i]) // must wait for the probe
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the others reach the probe in flight (not a retry period)
	close(conn.release)
	wg.Wait()
	for i, r := range results {
		if r.Completed != 1 || r.Skipped != "" {
			t.Errorf("shadow %d: %+v, want completed after the shared probe", i, r)
		}
	}
	if n := conn.Calls(memconn.CallTest); n > 1 {
		t.Errorf("%d probes, want 1", n)
	}
}
