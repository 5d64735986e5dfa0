package ldap

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

func TestPoolSharesConnections(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t, func(cfg *Config) { cfg.PoolSize = 2 })
	ctx := context.Background()
	res, err := c.Add(ctx, personClass, person("pooled"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Get(ctx, personClass, connector.Identifiers{UID: res.ID.UID})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.pool.mu.Lock()
	idle := len(c.pool.idle)
	c.pool.mu.Unlock()
	if idle < 1 || idle > 2 {
		t.Fatalf("%d idle connections, want 1 or 2 (pool size 2)", idle)
	}
}

func TestPoolWaitHonoursContext(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t, func(cfg *Config) { cfg.PoolSize = 1 })
	c.pool.sem <- struct{}{} // the only slot is taken
	defer func() { <-c.pool.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, personClass, connector.Identifiers{Name: "uid=x," + c.cfg.Classes[personClass].BaseDN})
	if catOf(t, err) != connector.CategoryNotSent || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for a busy pool: %v, want not sent with the deadline", err)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ctx := context.Background()
	if err := c.Test(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Test(ctx); catOf(t, err) != connector.CategoryNotSent {
		t.Fatalf("after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestPoolKeepsConnectionsAfterOrdinaryErrors(t *testing.T) {
	t.Parallel()
	c, _, base := setup(t)
	ctx := context.Background()
	if err := c.Test(ctx); err != nil {
		t.Fatal(err)
	}
	c.pool.mu.Lock()
	before := c.pool.idle[0]
	c.pool.mu.Unlock()
	for _, id := range []connector.Identifiers{{UID: "nope"}, {Name: "uid=nope," + base}} {
		if _, err := c.Get(ctx, personClass, id); !errors.Is(err, connector.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if _, err := c.Add(ctx, personClass, connector.Attributes{"uid": {"x"}, "cn": {"x"}}); !errors.Is(err, connector.ErrSchema) {
		t.Fatal(err)
	}
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	if len(c.pool.idle) != 1 || c.pool.idle[0] != before {
		t.Fatalf("the connection was replaced after not-found and schema errors")
	}
}
