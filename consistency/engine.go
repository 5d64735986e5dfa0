package consistency

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// ErrUnknownResource is returned for an operation naming a resource the
// engine was not configured with.
var ErrUnknownResource = errors.New("consistency: unknown resource")

// ErrShadowGone is returned for an operation on a shadow that is dead, whose
// add failed, or (for a modify) whose delete is pending, so that nothing can
// be done to its object.
var ErrShadowGone = errors.New("consistency: shadow is dead or was never created")

// Resource is one resource the engine provisions to.
type Resource struct {
	// ID names the resource; shadows carry it as ResourceID.
	ID string
	// Connector reaches the resource.
	Connector connector.Connector
	// Settings are the resource's consistency settings; nil means
	// DefaultSettings().
	Settings *Settings
}

// Config configures an Engine. Fields are alphabetical.
type Config struct {
	// Clock is the time source. Default: the wall clock.
	Clock connector.Clock
	// Discovery decides what happens when an add finds the object already
	// there. Default: fail (DiscoveryFail).
	Discovery DiscoveryHook
	// Logger receives the engine's logs. Default: discard.
	Logger *slog.Logger
	// Observer receives every outcome, for audit and metrics. Optional.
	Observer *Observer
	// Random returns uniform numbers in [0,1) for backoff jitter. Default:
	// math/rand/v2.Float64.
	Random func() float64
	// Resources are the resources, each with its connector and settings.
	Resources []Resource
	// Store keeps the shadows. Required.
	Store shadow.Store
}

// DiscoveryDecision is what a DiscoveryHook decides.
type DiscoveryDecision uint8

// The discovery decisions.
const (
	// DiscoveryFail fails the add with an error carrying the found
	// object's identifiers; the found object gets a shadow of its own
	// (origin discovered).
	DiscoveryFail DiscoveryDecision = iota
	// DiscoveryLink links the shadow being added to the found object: it
	// is taken as the object the host asked for.
	DiscoveryLink
)

// Discovered describes an object found on the resource where the engine
// expected none.
type Discovered struct {
	ResourceID string
	// Shadow is the shadow whose add collided.
	Shadow *shadow.Shadow
	// Object is the existing object as read from the resource.
	Object connector.Object
}

// DiscoveryHook is called when an add collides with an existing object. It
// runs while the engine holds the colliding shadow, so it MUST NOT call
// back into the engine for that shadow; other shadows are fine.
type DiscoveryHook func(ctx context.Context, d Discovered) (DiscoveryDecision, error)

// Observer receives the engine's outcomes. Every field is optional; each is
// called synchronously from the goroutine doing the work, so it MUST be
// quick and MUST NOT call back into the engine for the same shadow.
type Observer struct {
	OperationPostponed func(OperationEvent)
	OperationRetried   func(OperationEvent)
	OperationCompleted func(OperationEvent)
	OperationFailed    func(OperationEvent)
	OperationAbandoned func(OperationEvent)
	OperationCancelled func(OperationEvent)
	Discovered         func(OperationEvent)
	ResourceDown       func(ResourceEvent)
	ResourceUp         func(ResourceEvent)
	QuarantineEntered  func(ResourceEvent)
	QuarantineLeft     func(ResourceEvent)
}

// OperationEvent describes what happened to one pending operation.
type OperationEvent struct {
	ResourceID  string
	ShadowID    string
	OperationID int64
	Delta       connector.DeltaType
	Type        shadow.OpType
	Attempt     int
	// Err is the failure, when there was one.
	Err      error
	Category connector.Category
}

// ResourceEvent describes a change of a resource's availability.
type ResourceEvent struct {
	ResourceID string
	At         time.Time
	Reason     string
}

// Availability is what the engine believes about a resource.
type Availability uint8

// The availabilities.
const (
	// Up: operations are executed.
	Up Availability = iota + 1
	// Down: a communication failure was seen; operations are postponed
	// without a call until a probe or a refresh succeeds.
	Down
	// Broken: a configuration error was seen; operations are postponed
	// without a call, and not probed automatically, until an operator
	// fixes the resource and calls MarkUp (or Probe).
	Broken
	// Maintenance: operations are postponed without a call.
	Maintenance
)

// String returns the Availability as text for logs and errors.
func (a Availability) String() string {
	switch a {
	case Up:
		return "up"
	case Down:
		return "down"
	case Broken:
		return "broken"
	case Maintenance:
		return "maintenance"
	}
	return fmt.Sprintf("Availability(%d)", a)
}

// ResourceStatus is a snapshot of a resource's state in the engine.
type ResourceStatus struct {
	ID           string
	Availability Availability
	// Since is when the availability last changed; Reason why.
	Since  time.Time
	Reason string
	// Quarantined is true while the resource is quarantined.
	Quarantined bool
	// LastProbe is when the resource was last probed.
	LastProbe time.Time
	// ThrottledUntil is the latest Retry-After the resource gave; until
	// then no operation is sent to it. Zero when it never throttled.
	ThrottledUntil time.Time
}

type resource struct {
	id       string
	conn     connector.Connector
	settings Settings

	mu          sync.Mutex
	avail       Availability // Up, Down or Broken; maintenance is a separate flag
	maintenance bool
	since       time.Time
	reason      string
	lastProbe   time.Time
	quarantined bool
	throttled   time.Time     // no calls before this time (Retry-After)
	probing     chan struct{} // closed when the probe under way ends; nil when none is
	retries     int           // retry attempts since the last CheckQuarantine
	retryFails  int
}

// Engine provisions shadows to resources and keeps them consistent: it
// executes operations, postpones them when a resource is down, retries them
// on refresh, and discovers what really is when the resource disagrees.
//
// An Engine is safe for concurrent use. Operations on one shadow are
// serialized within the engine; across processes, use a store's Claimer.
type Engine struct {
	store     shadow.Store
	clock     connector.Clock
	log       *slog.Logger
	obs       Observer
	random    func() float64
	discovery DiscoveryHook
	resources map[string]*resource
	ids       []string

	locksMu sync.Mutex
	locks   map[string]*shadowLock // shadows being worked on

	markMu   sync.Mutex // guards lastMark
	lastMark time.Time  // the latest reconciliation mark handed out
}

// New returns an engine for cfg. It fails, listing every problem, when the
// store is missing, a resource has no ID or connector, an ID repeats, or
// settings are invalid.
func New(cfg Config) (*Engine, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("Store is nil"))
	}
	if len(cfg.Resources) == 0 {
		errs = append(errs, errors.New("Resources is empty"))
	}
	e := &Engine{
		store:     cfg.Store,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		random:    cfg.Random,
		discovery: cfg.Discovery,
		resources: make(map[string]*resource, len(cfg.Resources)),
		locks:     map[string]*shadowLock{},
	}
	if e.clock == nil {
		e.clock = connector.RealClock{}
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if e.random == nil {
		e.random = rand.Float64
	}
	if cfg.Observer != nil {
		e.obs = *cfg.Observer
	}
	for i, r := range cfg.Resources {
		switch {
		case r.ID == "":
			errs = append(errs, fmt.Errorf("Resources[%d].ID is empty", i))
			continue
		case r.Connector == nil:
			errs = append(errs, fmt.Errorf("Resources[%d] (%q).Connector is nil", i, r.ID))
		case e.resources[r.ID] != nil:
			errs = append(errs, fmt.Errorf("Resources[%d].ID %q repeats", i, r.ID))
			continue
		}
		s := DefaultSettings()
		if r.Settings != nil {
			s = r.Settings.clone()
		}
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("Resources[%d] (%q).Settings: %w", i, r.ID, err))
		}
		e.resources[r.ID] = &resource{id: r.ID, conn: r.Connector, settings: s, avail: Up, maintenance: s.Maintenance}
		e.ids = append(e.ids, r.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("consistency: invalid config: %w", err)
	}
	sort.Strings(e.ids)
	return e, nil
}

// Store returns the engine's shadow store.
func (e *Engine) Store() shadow.Store { return e.store }

// Clock returns the engine's clock.
func (e *Engine) Clock() connector.Clock { return e.clock }

// ResourceIDs returns the IDs of the configured resources, sorted.
func (e *Engine) ResourceIDs() []string { return append([]string(nil), e.ids...) }

// Settings returns the settings of resource id.
func (e *Engine) Settings(id string) (Settings, error) {
	r, err := e.resource(id)
	if err != nil {
		return Settings{}, err
	}
	return r.settings.clone(), nil
}

// Connector returns the connector of resource id.
func (e *Engine) Connector(id string) (connector.Connector, error) {
	r, err := e.resource(id)
	if err != nil {
		return nil, err
	}
	return r.conn, nil
}

func (e *Engine) resource(id string) (*resource, error) {
	r := e.resources[id]
	if r == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownResource, id)
	}
	return r, nil
}

// shadowLock serializes work on one shadow; refs counts its holders and
// waiters, so that it is dropped when nobody needs it.
type shadowLock struct {
	mu   sync.Mutex
	refs int
}

// lock serializes work on one shadow within the engine. Each shadow has a
// lock of its own (not a stripe shared with others), so that a hook or
// observer working on other shadows cannot deadlock.
func (e *Engine) lock(shadowID string) func() {
	e.locksMu.Lock()
	l := e.locks[shadowID]
	if l == nil {
		l = &shadowLock{}
		e.locks[shadowID] = l
	}
	l.refs++
	e.locksMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		e.locksMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(e.locks, shadowID)
		}
		e.locksMu.Unlock()
	}
}

// Status returns the engine's view of resource id.
func (e *Engine) Status(id string) (ResourceStatus, error) {
	r, err := e.resource(id)
	if err != nil {
		return ResourceStatus{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := ResourceStatus{ID: id, Availability: r.avail, Since: r.since, Reason: r.reason,
		Quarantined: r.quarantined, LastProbe: r.lastProbe, ThrottledUntil: r.throttled}
	if r.maintenance {
		st.Availability = Maintenance
	}
	return st, nil
}

// SetMaintenance switches maintenance mode of resource id on or off.
func (e *Engine) SetMaintenance(id string, on bool) error {
	r, err := e.resource(id)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.maintenance = on
	r.mu.Unlock()
	e.log.Info("maintenance mode changed", "resource", id, "maintenance", on)
	return nil
}

// MarkUp marks resource id up (after an operator fixed a broken resource,
// or when the host knows better).
func (e *Engine) MarkUp(id string) error {
	r, err := e.resource(id)
	if err != nil {
		return err
	}
	e.markUp(r, "marked up by the host")
	return nil
}

func (e *Engine) markUp(r *resource, reason string) {
	r.mu.Lock()
	was := r.avail
	if was != Up {
		r.avail, r.since, r.reason = Up, e.clock.Now(), reason
	}
	r.mu.Unlock()
	if was != Up {
		e.log.Info("resource up", "resource", r.id, "reason", reason)
		if f := e.obs.ResourceUp; f != nil {
			f(ResourceEvent{ResourceID: r.id, At: e.clock.Now(), Reason: reason})
		}
	}
}

func (e *Engine) markDown(r *resource, avail Availability, reason string) {
	r.mu.Lock()
	was := r.avail
	if was != avail {
		r.avail, r.since, r.reason = avail, e.clock.Now(), reason
		r.lastProbe = e.clock.Now()
	}
	r.mu.Unlock()
	if was != avail {
		e.log.Warn("resource "+avail.String(), "resource", r.id, "reason", reason)
		if f := e.obs.ResourceDown; f != nil {
			f(ResourceEvent{ResourceID: r.id, At: e.clock.Now(), Reason: reason})
		}
	}
}

func (r *resource) state() (Availability, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.avail, r.maintenance
}
