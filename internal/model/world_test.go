package model_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
)

// class is the one object class of the model's resources; its naming
// attribute is memconn's default, "uid".
const class = connector.ObjectClass("account")

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// seqStore gives new shadows sequential IDs, so that the tasks visit
// shadows in the same order in every run of a seed (memstore and sqlstore
// draw random IDs) and a seed is reproducible.
type seqStore struct {
	shadow.Store
	n atomic.Int64
}

func (s *seqStore) Create(ctx context.Context, sh *shadow.Shadow) error {
	if sh != nil && sh.ID == "" {
		sh.ID = fmt.Sprintf("s%07d", s.n.Add(1))
	}
	return s.Store.Create(ctx, sh)
}

// resource is one of the world's three resources.
type resource struct {
	idx      int
	id       string
	conn     *memconn.Conn
	settings consistency.Settings
	sync     *livesync.Task // nil when live sync does not follow it
	// flap > 0 toggles Down/Up every flap steps.
	flap int
}

// world is one seed's setup: the engine, the tasks, the resources, the model
// and the trace of what the driver did.
type world struct {
	seed  int64
	rng   *rand.Rand
	clk   *connector.FakeClock
	store shadow.Store
	res   []*resource
	eng   *consistency.Engine
	ref   *refresh.Task
	prop  *propagation.Task

	ents  []*entity
	names int
	step  int
	trace []string
	stats *stats

	mu      sync.Mutex
	link    map[string]bool // name → the discovery hook links a collision
	unknown map[opKey]bool  // operations that had an attempt of unknown outcome
	events  map[opKey][]string
}

type opKey struct {
	shadowID string
	opID     int64
}

// stats counts what the seeds exercised, so that a run shows that the
// interesting paths were taken.
type stats struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *stats) add(k string, d int) {
	s.mu.Lock()
	s.n[k] += d
	s.mu.Unlock()
}

func (w *world) logf(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf("%4d %s ", w.step, w.clk.Now().Sub(t0))+fmt.Sprintf(format, args...))
}

// newWorld builds seed's world over store. tokens keeps the live-sync tokens.
func newWorld(seed int64, store shadow.Store, tokens livesync.TokenStore, st *stats) (*world, error) {
	w := &world{
		seed:    seed,
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x5eed)),
		clk:     connector.NewFakeClock(t0),
		store:   &seqStore{Store: store},
		link:    map[string]bool{},
		unknown: map[opKey]bool{},
		events:  map[opKey][]string{},
		stats:   st,
	}
	jitter := rand.New(rand.NewPCG(uint64(seed), 0x7177))
	kinds := []struct {
		id      string
		precise bool
		group   bool
		sync    bool
	}{
		{"precise", true, false, true},
		{"imprecise", false, false, w.rng.IntN(2) == 0},
		{"grouped", w.rng.IntN(2) == 0, true, false},
	}
	var resources []consistency.Resource
	for i, k := range kinds {
		s := consistency.DefaultSettings()
		s.OperationRetryPeriod = []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute}[w.rng.IntN(3)]
		s.OperationRetryMaxAttempts = []int{0, 1, 2, 3, 5}[w.rng.IntN(5)]
		// Long retentions keep every operation's record for the checks.
		s.PendingOperationRetentionPeriod = 1000 * time.Hour
		s.DeadShadowRetentionPeriod = 1000 * time.Hour
		s.ProbeInterval = time.Minute
		s.RefreshOnRead = w.rng.IntN(3) == 0
		if k.group {
			s.OperationGroupingInterval = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute}[w.rng.IntN(3)]
			s.PendingOperationGracePeriod = time.Duration(w.rng.IntN(3)) * 5 * time.Minute
		}
		r := &resource{idx: i, id: k.id, settings: s,
			conn: memconn.New(memconn.Options{PreciseTokens: k.precise, Clock: w.clk})}
		if w.rng.IntN(3) == 0 {
			r.flap = 2 + w.rng.IntN(5)
		}
		w.res = append(w.res, r)
		settings := s
		resources = append(resources, consistency.Resource{ID: r.id, Connector: r.conn, Settings: &settings})
	}
	var err error
	w.eng, err = consistency.New(consistency.Config{
		Clock:     w.clk,
		Discovery: w.discover,
		Observer:  w.observer(),
		Random:    jitter.Float64,
		Resources: resources,
		Store:     w.store,
	})
	if err != nil {
		return nil, err
	}
	w.ref, err = refresh.New(refresh.Config{Engine: w.eng, Concurrency: 1})
	if err != nil {
		return nil, err
	}
	w.prop, err = propagation.New(propagation.Config{Engine: w.eng, Concurrency: 1})
	if err != nil {
		return nil, err
	}
	for i, k := range kinds {
		if !k.sync {
			continue
		}
		w.res[i].sync, err = livesync.New(livesync.Config{
			Class:              class,
			Clock:              w.clk,
			Connector:          w.res[i].conn,
			ResourceID:         w.res[i].id,
			StartFromBeginning: true,
			Store:              w.store,
			Tokens:             tokens,
		})
		if err != nil {
			return nil, err
		}
	}
	return w, nil
}

// discover is the engine's discovery hook: it links or fails a collision
// as the driver decided when it made the collision.
func (w *world) discover(_ context.Context, d consistency.Discovered) (consistency.DiscoveryDecision, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.link[d.Object.ID.Name] {
		return consistency.DiscoveryLink, nil
	}
	return consistency.DiscoveryFail, nil
}

// observer records, per operation, whether an attempt's outcome was
// unknown (so that a later failure may hide an applied write), and a short
// history for the trace.
func (w *world) observer() *consistency.Observer {
	rec := func(kind string) func(consistency.OperationEvent) {
		return func(ev consistency.OperationEvent) {
			w.mu.Lock()
			defer w.mu.Unlock()
			k := opKey{ev.ShadowID, ev.OperationID}
			if ev.Err != nil && ev.Category == connector.CategoryOutcomeUnknown {
				w.unknown[k] = true
			}
			s := kind
			if ev.Err != nil {
				s += "(" + ev.Category.String() + ")"
			}
			w.events[k] = append(w.events[k], s)
		}
	}
	return &consistency.Observer{
		OperationPostponed: rec("postponed"),
		OperationRetried:   rec("retried"),
		OperationCompleted: rec("completed"),
		OperationFailed:    rec("failed"),
		OperationAbandoned: rec("abandoned"),
		OperationCancelled: rec("cancelled"),
		Discovered:         rec("discovered"),
	}
}

func (w *world) hadUnknown(shadowID string, opID int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.unknown[opKey{shadowID, opID}]
}

func (w *world) history(shadowID string, opID int64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.events[opKey{shadowID, opID}], ",")
}
