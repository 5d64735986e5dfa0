package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/umbra-idm/umbra/shadow"
)

func concurrencyCases() []testCase {
	return []testCase{
		{name: "ConcurrentUpdatesLoseNothing", run: testConcurrentUpdates},
		{name: "ConcurrentCreatesOfOneIdentity", run: testConcurrentCreates},
	}
}

// testConcurrentUpdates increments a counter attribute from many goroutines,
// each reading, incrementing and updating with retry on conflict: optimistic
// concurrency must lose no increment.
func testConcurrentUpdates(h *harness) {
	t := h.t
	const workers, increments = 8, 50
	sh := newShadow("counter", "r1", "account", "u1")
	sh.Attributes["n"] = []string{"0"}
	h.create(sh)
	h.create(newShadow("bystander", "r1", "account", "u2"))

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < increments; {
				cur, err := h.s.Get(h.ctx, "counter")
				if err != nil {
					errs <- fmt.Errorf("worker %d: Get: %w", w, err)
					return
				}
				n, err := strconv.Atoi(cur.Attributes.Get("n"))
				if err != nil {
					errs <- fmt.Errorf("worker %d: counter %q: %w", w, cur.Attributes.Get("n"), err)
					return
				}
				cur.Attributes["n"] = []string{strconv.Itoa(n + 1)}
				err = h.s.Update(h.ctx, cur)
				switch {
				case errors.Is(err, shadow.ErrConflict):
					continue // somebody else won; read again
				case err != nil:
					errs <- fmt.Errorf("worker %d: Update: %w", w, err)
					return
				}
				i++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := h.get("counter")
	if n := got.Attributes.Get("n"); n != strconv.Itoa(workers*increments) {
		t.Fatalf("counter = %s after %d increments: updates were lost", n, workers*increments)
	}
	if got.Version != workers*increments+1 {
		t.Fatalf("Version = %d after %d updates, want %d", got.Version, workers*increments, workers*increments+1)
	}
	if v := h.get("bystander").Version; v != 1 {
		t.Fatalf("an unrelated shadow's Version moved to %d", v)
	}
}

// testConcurrentCreates races many creates of the same live identity: exactly
// one wins, the others get ErrDuplicate.
func testConcurrentCreates(h *harness) {
	t := h.t
	const racers = 8
	var wg sync.WaitGroup
	results := make(chan error, racers)
	for range racers {
		wg.Go(func() {
			results <- h.s.Create(h.ctx, newShadow("", "r1", "account", "same"))
		})
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, shadow.ErrDuplicate):
			t.Fatalf("racing Create: error %v, want nil or shadow.ErrDuplicate", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing Creates of one live identity succeeded, want 1", won, racers)
	}
	if n := h.count(shadow.Query{UID: "same"}); n != 1 {
		t.Fatalf("Count(UID same) = %d, want 1", n)
	}
}
