package compensation

import (
	"context"
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/connector"
)

// ErrCompensationTimeout is the cause (context.Cause) of a compensation's
// context once Config.CompensationTimeout has passed, and the error of every
// target that was not reverted because of it.
var ErrCompensationTimeout = errors.New("compensation: time limit reached")

type compensationKey struct{}

// compensationInfo is the mark a compensation puts on its context: the
// failure it compensates, so that a nested Sync can log it too.
type compensationInfo struct {
	cause error
}

// IsCompensation reports whether ctx belongs to a compensation: the
// Synchronizer marks the contexts it passes to the ManagedStore and the
// targets while reverting a change. A host hook uses it to tell a revert
// from an ordinary change; Sync uses it to never compensate a compensation.
func IsCompensation(ctx context.Context) bool {
	_, ok := ctx.Value(compensationKey{}).(*compensationInfo)
	return ok
}

// compensationCause returns the failure the compensation of ctx compensates
// (nil when ctx is not a compensation's or the cause is unknown).
func compensationCause(ctx context.Context) error {
	if info, ok := ctx.Value(compensationKey{}).(*compensationInfo); ok {
		return info.cause
	}
	return nil
}

func markCompensation(ctx context.Context, cause error) context.Context {
	return context.WithValue(ctx, compensationKey{}, &compensationInfo{cause: cause})
}

// compensationContext returns the context a compensation of cause runs under: marked,
// detached from parent's cancellation (its values kept), and cancelled with
// cause ErrCompensationTimeout once s.timeout has passed on s.clock. The
// caller MUST call the returned func when done.
func (s *Synchronizer) compensationContext(parent context.Context, cause error) (context.Context, context.CancelFunc) {
	base := markCompensation(context.WithoutCancel(parent), cause)
	if _, real := s.clock.(connector.RealClock); real {
		// On the wall clock a real deadline is best: drivers that read
		// ctx.Deadline() pass it on to their network calls.
		return context.WithTimeoutCause(base, s.timeout, timeoutError(s))
	}
	ctx, cancel := context.WithCancelCause(base)
	fire := s.clock.After(s.timeout)
	go func() {
		select {
		case <-fire:
			cancel(timeoutError(s))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

func timeoutError(s *Synchronizer) error {
	return fmt.Errorf("%w (%s)", ErrCompensationTimeout, s.timeout)
}
