package consistency_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/consistency"
)

// FuzzSettingsValidate: validating any Settings (every backoff kind, a
// quarantine policy) never panics; every invalid field is named in the
// error; and the backoff of settings that pass never waits a negative
// time, grows with the attempts (fixed, or exponential without jitter),
// and keeps within
// its cap.
func FuzzSettingsValidate(f *testing.F) {
	d := consistency.DefaultSettings()
	f.Add(int64(d.DeadShadowRetentionPeriod), int64(0), d.OperationRetryMaxAttempts, int64(d.OperationRetryPeriod),
		int64(0), int64(d.PendingOperationRetentionPeriod), int64(d.ProbeInterval), uint8(0), int64(0), 0.0, int64(0), 0.0, []byte{}, false, 0.0, 0, int64(0), 0)
	f.Add(int64(-1), int64(-1), -1, int64(0), int64(-1), int64(-1), int64(-1), uint8(1), int64(-1), math.NaN(), int64(-1), math.NaN(),
		[]byte{0x80}, true, math.NaN(), -1, int64(-1), -1)
	f.Add(int64(0), int64(time.Minute), 3, int64(time.Hour), int64(0), int64(0), int64(0), uint8(1), int64(time.Second), 2.0,
		int64(time.Hour), 0.2, []byte{1, 2, 3}, true, 0.5, 10, int64(time.Hour), 5)
	f.Add(int64(0), int64(0), 100, int64(1), int64(0), int64(0), int64(0), uint8(1), int64(math.MaxInt64), math.Inf(1),
		int64(0), 0.999999, []byte{}, true, 1.0000001, 0, int64(0), 0)
	f.Add(int64(0), int64(0), 0, int64(1), int64(0), int64(0), int64(0), uint8(2), int64(0), 0.0, int64(0), 0.0,
		[]byte{0, 255, 127}, true, 0.0, 0, int64(0), 0)
	f.Fuzz(func(t *testing.T, dead, grouping int64, attempts int, period, grace, retention, probe int64,
		kind uint8, base int64, factor float64, cap int64, jitter float64, waits []byte,
		quarantine bool, share float64, maxFail int, qInterval int64, minRetries int) {
		s := consistency.Settings{
			DeadShadowRetentionPeriod:       time.Duration(dead),
			OperationGroupingInterval:       time.Duration(grouping),
			OperationRetryMaxAttempts:       attempts,
			OperationRetryPeriod:            time.Duration(period),
			PendingOperationGracePeriod:     time.Duration(grace),
			PendingOperationRetentionPeriod: time.Duration(retention),
			ProbeInterval:                   time.Duration(probe),
		}
		bad := map[string]bool{
			"DeadShadowRetentionPeriod":       dead < 0,
			"OperationGroupingInterval":       grouping < 0,
			"OperationRetryMaxAttempts":       attempts < 0,
			"OperationRetryPeriod":            period <= 0,
			"PendingOperationGracePeriod":     grace < 0,
			"PendingOperationRetentionPeriod": retention < 0,
			"ProbeInterval":                   probe < 0,
		}
		switch kind % 4 {
		case 1:
			s.Backoff = consistency.FixedBackoff{Period: time.Duration(base)}
			bad["FixedBackoff.Period"] = base <= 0
		case 2:
			s.Backoff = consistency.ExponentialBackoff{Base: time.Duration(base), Factor: factor, Cap: time.Duration(cap), Jitter: jitter}
			bad["ExponentialBackoff.Base"] = base <= 0
			bad["ExponentialBackoff.Factor"] = !(factor >= 1)
			bad["ExponentialBackoff.Cap"] = cap < 0
			bad["ExponentialBackoff.Jitter"] = !(jitter >= 0 && jitter < 1)
		case 3:
			var ws []time.Duration
			for _, w := range waits {
				ws = append(ws, time.Duration(int8(w))*time.Hour)
			}
			s.Backoff = consistency.ScheduleBackoff{Waits: ws}
			firstBad := len(ws) == 0
			for _, w := range ws {
				firstBad = firstBad || w <= 0
			}
			bad["ScheduleBackoff.Waits"] = firstBad
		}
		if quarantine {
			s.Quarantine = &consistency.QuarantinePolicy{FailureShare: share, MaxFailures: maxFail,
				Interval: time.Duration(qInterval), MinRetries: minRetries}
			bad["Quarantine.FailureShare"] = !(share >= 0 && share <= 1)
			bad["Quarantine.MaxFailures"] = maxFail < 0
			bad["Quarantine.Interval"] = qInterval < 0
			bad["Quarantine.MinRetries"] = minRetries < 0
			bad["Quarantine ="] = share == 0 && maxFail == 0
		}
		err := s.Validate()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		anyBad := false
		for field, isBad := range bad {
			anyBad = anyBad || isBad
			if isBad && !strings.Contains(msg, field) {
				t.Fatalf("%+v: %s is invalid, but the error %q does not name it", s, field, msg)
			}
		}
		if !anyBad && err != nil {
			t.Fatalf("%+v: valid settings refused: %v", s, err)
		}
		if err != nil {
			return
		}
		// Valid: the waits are sane.
		b := s.Backoff
		if b == nil {
			b = consistency.FixedBackoff{Period: s.OperationRetryPeriod}
		}
		exp, isExp := b.(consistency.ExponentialBackoff)
		var prev time.Duration
		for _, n := range []int{-1, 0, 1, 2, 3, 5, 10, 64, 1000, math.MaxInt32} {
			for _, rnd := range []float64{0, 0.5, math.Nextafter(1, 0)} {
				w := b.Delay(n, rnd)
				if w < 0 {
					t.Fatalf("%#v.Delay(%d, %v) = %v, negative", b, n, rnd, w)
				}
				if isExp && exp.Cap > 0 && float64(w) > float64(exp.Cap)*(1+exp.Jitter)+1 {
					t.Fatalf("%#v.Delay(%d, %v) = %v, above the cap with jitter", b, n, rnd, w)
				}
			}
			_, isSchedule := b.(consistency.ScheduleBackoff) // a schedule may shrink
			if w := b.Delay(n, 0.5); !isSchedule && (!isExp || exp.Jitter == 0) && w < prev {
				t.Fatalf("%#v.Delay(%d) = %v, less than %v before", b, n, w, prev)
			}
			prev = b.Delay(n, 0.5)
		}
	})
}
