package connector

import (
	"time"

	"github.com/umbra-idm/umbra/internal/clock"
)

// Clock is the time source every umbra engine, store and connector reads:
// Now and After. Configurations take one; nil means the wall clock. Tests
// pass a *FakeClock and move time by hand, so that nothing sleeps for a
// retry period.
type Clock = clock.Clock

// FakeClock is a Clock that moves only when told (Advance, Set). Its After
// channels fire when the fake time passes them. Safe for concurrent use.
type FakeClock = clock.Fake

// RealClock is the wall clock.
type RealClock = clock.Real

// NewFakeClock returns a FakeClock showing t.
func NewFakeClock(t time.Time) *FakeClock { return clock.NewFake(t) }
