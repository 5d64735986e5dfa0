package consistency

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Defaults of the per-resource consistency settings (see DefaultSettings).
const (
	OperationRetryPeriodDefault            = 30 * time.Minute
	OperationRetryMaxAttemptsDefault       = 3
	PendingOperationRetentionPeriodDefault = 24 * time.Hour
	DeadShadowRetentionPeriodDefault       = 7 * 24 * time.Hour
	ProbeIntervalDefault                   = time.Minute
	QuarantineIntervalDefault              = 6 * time.Hour
)

// Settings are the consistency settings of one resource. Start from
// DefaultSettings and change what you need: every field is taken as it is,
// so a zero duration means zero, not "default". Fields are alphabetical.
type Settings struct {
	// Backoff computes the wait before the next retry from the number of
	// attempts made. Nil means FixedBackoff{OperationRetryPeriod}.
	Backoff Backoff
	// DeadShadowRetentionPeriod is how long a dead shadow is kept before
	// refresh deletes it (never before the grace period of its operations
	// ends). Default 7 days.
	DeadShadowRetentionPeriod time.Duration
	// Maintenance puts the resource in maintenance: every operation is
	// postponed without a call, and nothing counts as a failure. Default
	// off. Engine.SetMaintenance changes it at run time.
	Maintenance bool
	// OperationGroupingInterval, when > 0, queues add/modify/delete as
	// grouped pending operations instead of executing them; propagation
	// executes them merged once the oldest is this old. Default 0 (off).
	OperationGroupingInterval time.Duration
	// OperationRetryMaxAttempts is how many retries follow the first
	// attempt before the operation is given up; 0 disables retry (a
	// communication failure is final). Default 3.
	OperationRetryMaxAttempts int
	// OperationRetryPeriod is the wait after a failed attempt before the
	// next, and the poll interval of async operations. Default 30 min.
	OperationRetryPeriod time.Duration
	// PendingOperationGracePeriod is how long executed grouped and async
	// operations still count in the shadow's future view. Default 0.
	PendingOperationGracePeriod time.Duration
	// PendingOperationRetentionPeriod is how long completed operations
	// stay in the shadow. Default 24 h.
	PendingOperationRetentionPeriod time.Duration
	// ProbeInterval is the least time between two probes (Tester) of a
	// resource marked down when an operation arrives. Default 1 min.
	ProbeInterval time.Duration
	// Quarantine, when set, quarantines the resource when too many of a
	// refresh run's retries fail. Default nil (off).
	Quarantine *QuarantinePolicy
	// RefreshOnRead makes Get refresh the shadow first. Default false.
	RefreshOnRead bool
	// RetryGeneric makes generic errors retryable like communication
	// errors. Default false (fatal).
	RetryGeneric bool
}

// DefaultSettings returns the default consistency settings.
func DefaultSettings() Settings {
	return Settings{
		DeadShadowRetentionPeriod:       DeadShadowRetentionPeriodDefault,
		OperationRetryMaxAttempts:       OperationRetryMaxAttemptsDefault,
		OperationRetryPeriod:            OperationRetryPeriodDefault,
		PendingOperationRetentionPeriod: PendingOperationRetentionPeriodDefault,
		ProbeInterval:                   ProbeIntervalDefault,
	}
}

// QuarantinePolicy says when a resource is quarantined and what that does.
// A resource is quarantined after a refresh run (see Engine.CheckQuarantine)
// in which at least MinRetries retries were made and more than FailureShare
// of them, or more than MaxFailures (when > 0), failed. While quarantined,
// retries wait Interval; the first retry that succeeds ends the quarantine.
type QuarantinePolicy struct {
	// FailureShare is the share of failed retries (0 < s ≤ 1) above which
	// the resource is quarantined. 0 leaves the share out.
	FailureShare float64
	// Interval is the wait between retries while quarantined. Default
	// QuarantineIntervalDefault when zero.
	Interval time.Duration
	// MaxFailures is the number of failed retries above which the resource
	// is quarantined. 0 leaves the number out.
	MaxFailures int
	// MinRetries is the least number of retries in a run for the share to
	// count. Default 1.
	MinRetries int
}

// Validate reports every invalid field of s at once, each naming the field
// and its value.
func (s Settings) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("%s = %v: %s", field, v, why))
	}
	nonNeg := func(field string, d time.Duration) {
		if d < 0 {
			bad(field, d, "must not be negative")
		}
	}
	nonNeg("DeadShadowRetentionPeriod", s.DeadShadowRetentionPeriod)
	nonNeg("OperationGroupingInterval", s.OperationGroupingInterval)
	nonNeg("PendingOperationGracePeriod", s.PendingOperationGracePeriod)
	nonNeg("PendingOperationRetentionPeriod", s.PendingOperationRetentionPeriod)
	nonNeg("ProbeInterval", s.ProbeInterval)
	if s.OperationRetryPeriod <= 0 {
		bad("OperationRetryPeriod", s.OperationRetryPeriod, "must be positive")
	}
	if s.OperationRetryMaxAttempts < 0 {
		bad("OperationRetryMaxAttempts", s.OperationRetryMaxAttempts, "must not be negative (0 disables retry)")
	}
	if s.Backoff != nil {
		if err := s.Backoff.validate(); err != nil {
			errs = append(errs, fmt.Errorf("Backoff: %w", err))
		}
	}
	if q := s.Quarantine; q != nil {
		if q.FailureShare < 0 || q.FailureShare > 1 || math.IsNaN(q.FailureShare) {
			bad("Quarantine.FailureShare", q.FailureShare, "must be between 0 and 1")
		}
		if q.MaxFailures < 0 {
			bad("Quarantine.MaxFailures", q.MaxFailures, "must not be negative")
		}
		if q.FailureShare == 0 && q.MaxFailures == 0 {
			bad("Quarantine", "{}", "needs FailureShare or MaxFailures")
		}
		if q.Interval < 0 {
			bad("Quarantine.Interval", q.Interval, "must not be negative")
		}
		if q.MinRetries < 0 {
			bad("Quarantine.MinRetries", q.MinRetries, "must not be negative")
		}
	}
	return errors.Join(errs...)
}

// clone returns a copy of s that shares nothing a caller could change
// afterwards (the quarantine policy, a schedule's waits).
func (s *Settings) clone() Settings {
	c := *s
	if s.Quarantine != nil {
		q := *s.Quarantine
		c.Quarantine = &q
	}
	if b, ok := s.Backoff.(ScheduleBackoff); ok {
		c.Backoff = ScheduleBackoff{Waits: slices.Clone(b.Waits)}
	}
	return c
}

func (s *Settings) backoff() Backoff {
	if s.Backoff == nil {
		return FixedBackoff{Period: s.OperationRetryPeriod}
	}
	return s.Backoff
}

// Backoff computes retry waits. Implementations are FixedBackoff,
// ExponentialBackoff and ScheduleBackoff.
type Backoff interface {
	// Delay returns the wait after attempt number attempts (1 after the
	// first failed attempt). rnd is a uniform random number in [0,1) for
	// jitter.
	Delay(attempts int, rnd float64) time.Duration
	validate() error
}

// FixedBackoff waits Period after every failed attempt (the default, with
// OperationRetryPeriod).
type FixedBackoff struct {
	Period time.Duration
}

// Delay returns Period.
func (b FixedBackoff) Delay(int, float64) time.Duration { return b.Period }

func (b FixedBackoff) validate() error {
	if b.Period <= 0 {
		return fmt.Errorf("FixedBackoff.Period = %v: must be positive", b.Period)
	}
	return nil
}

// ExponentialBackoff waits Base × Factor^(attempts-1), at most Cap, then
// spread by ±Jitter (a fraction, 0.2 = ±20%).
type ExponentialBackoff struct {
	Base   time.Duration
	Factor float64
	Cap    time.Duration
	Jitter float64
}

// Delay returns the exponential wait with jitter.
func (b ExponentialBackoff) Delay(attempts int, rnd float64) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := float64(b.Base) * math.Pow(b.Factor, float64(attempts-1))
	if b.Cap > 0 && d > float64(b.Cap) {
		d = float64(b.Cap)
	}
	d *= 1 + b.Jitter*(2*rnd-1)
	switch {
	case d < 0:
		d = 0
	case d >= math.MaxInt64 || math.IsInf(d, 1) || math.IsNaN(d):
		// Converting a float beyond int64 gives a negative Duration on
		// amd64: an uncapped backoff would retry at once, forever.
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(d)
}

func (b ExponentialBackoff) validate() error {
	var errs []error
	if b.Base <= 0 {
		errs = append(errs, fmt.Errorf("ExponentialBackoff.Base = %v: must be positive", b.Base))
	}
	if b.Factor < 1 || math.IsNaN(b.Factor) {
		errs = append(errs, fmt.Errorf("ExponentialBackoff.Factor = %v: must be at least 1", b.Factor))
	}
	if b.Cap < 0 {
		errs = append(errs, fmt.Errorf("ExponentialBackoff.Cap = %v: must not be negative", b.Cap))
	}
	if b.Jitter < 0 || b.Jitter >= 1 || math.IsNaN(b.Jitter) {
		errs = append(errs, fmt.Errorf("ExponentialBackoff.Jitter = %v: must be in [0,1)", b.Jitter))
	}
	return errors.Join(errs...)
}

// ScheduleBackoff waits Waits[attempts-1]; after the last entry the last
// wait repeats (6 h, 12 h, 24 h, then daily).
type ScheduleBackoff struct {
	Waits []time.Duration
}

// Delay returns the scheduled wait.
func (b ScheduleBackoff) Delay(attempts int, _ float64) time.Duration {
	i := attempts - 1
	if i < 0 {
		i = 0
	}
	if i >= len(b.Waits) {
		i = len(b.Waits) - 1
	}
	return b.Waits[i]
}

func (b ScheduleBackoff) validate() error {
	if len(b.Waits) == 0 {
		return errors.New("ScheduleBackoff.Waits is empty")
	}
	for i, w := range b.Waits {
		if w <= 0 {
			return fmt.Errorf("ScheduleBackoff.Waits[%d] = %v: must be positive", i, w)
		}
	}
	return nil
}
