package consistency_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
)

// Fatal categories are recorded as completed failed operations, returned,
// and never retried.
func TestFatalCategoriesAreNotRetried(t *testing.T) {
	t.Parallel()
	cats := []connector.Category{connector.CategorySchema, connector.CategoryConfiguration,
		connector.CategoryPolicy, connector.CategoryPermission, connector.CategoryGeneric}
	for _, cat := range cats {
		for _, kind := range []string{"add", "modify", "delete"} {
			t.Run(cat.String()+"/"+kind, func(t *testing.T) {
				t.Parallel()
				b := setup(t, setupOpts{})
				var id string
				if kind != "add" {
					id = b.live(t, "alice").ID
				}
				b.conn.ResetCalls()
				b.events.reset()
				b.conn.FailNext(1, cat)
				var out consistency.Outcome
				var err error
				switch kind {
				case "add":
					out, err = b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "alice", Attributes: attrs("alice")})
					if out.Shadow != nil {
						id = out.Shadow.ID
					}
				case "modify":
					out, err = b.eng.Modify(b.ctx, id, replace("mail", "x"))
				case "delete":
					out, err = b.eng.Delete(b.ctx, id)
				}
				if !errors.Is(err, cat.Sentinel()) || connector.Classify(err) != cat {
					t.Fatalf("error = %v, want category %v", err, cat)
				}
				wantStatus(t, out, consistency.Failed)
				sh := b.shadow(t, id)
				op := sh.Operation(out.OperationID)
				if op == nil || !op.Completed() || op.Result != shadow.ResultFailure || op.LastErrorCategory != cat || op.LastError == "" {
					t.Errorf("operation = %+v, want completed failure of category %v", op, cat)
				}
				if kind == "add" {
					if !sh.Dead || sh.NeedsReconciliation {
						t.Errorf("failed add: shadow dead=%v needsReconciliation=%v, want dead only", sh.Dead, sh.NeedsReconciliation)
					}
				} else if !sh.NeedsReconciliation || sh.Dead {
					t.Errorf("failed %s: shadow dead=%v needsReconciliation=%v, want needs reconciliation", kind, sh.Dead, sh.NeedsReconciliation)
				}
				wantAvail := consistency.Up
				if cat == connector.CategoryConfiguration {
					wantAvail = consistency.Broken
				}
				if a := b.availability(t); a != wantAvail {
					t.Errorf("availability = %v, want %v", a, wantAvail)
				}
				if f := b.events.of("failed"); len(f) != 1 || f[0].Op.Category != cat {
					t.Errorf("failed events = %+v", f)
				}
				calls := b.calls()
				b.clock.Advance(48 * time.Hour)
				res := b.refresh(t, id)
				if res.Retried != 0 || res.StillPending != 0 {
					t.Errorf("refresh retried a fatal failure: %+v", res)
				}
				if got := b.calls(); len(got) != len(calls) || got[memconn.CallKind(kind)] != calls[memconn.CallKind(kind)] {
					t.Errorf("calls after refresh = %v, want %v", got, calls)
				}
			})
		}
	}
}

func TestBrokenResourcePostponesUntilMarkedUp(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	b.conn.FailNext(1, connector.CategoryConfiguration)
	if _, err := b.eng.Modify(b.ctx, sh.ID, replace("mail", "1")); !errors.Is(err, connector.ErrConfiguration) {
		t.Fatalf("modify: %v", err)
	}
	b.conn.ResetCalls()
	wantStatus(t, b.modify(t, sh.ID, replace("mail", "2")), consistency.Pending)
	// Not probed automatically, however long it waits: each operation let
	// through would fail for good on the configuration error.
	b.clock.Advance(time.Hour)
	if res := b.refresh(t, sh.ID); res.Skipped == "" {
		t.Errorf("refresh of a broken resource = %+v", res)
	}
	wantStatus(t, b.modify(t, sh.ID, replace("mail", "3")), consistency.Pending)
	if len(b.calls()) != 0 {
		t.Errorf("a broken resource was called: %v", b.calls())
	}
	wantNoErr(t, b.eng.MarkUp(resID))
	if a := b.availability(t); a != consistency.Up {
		t.Fatalf("availability after MarkUp = %v", a)
	}
	if res := b.refresh(t, sh.ID); res.Completed != 2 {
		t.Errorf("refresh after MarkUp = %+v", res)
	}
	b.wantObject(t, "alice", "mail", "3")
}

func TestRetryGeneric(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) { s.RetryGeneric = true })})
	sh := b.live(t, "alice")
	b.conn.FailNext(1, connector.CategoryGeneric)
	out := b.modify(t, sh.ID, replace("mail", "x"))
	wantStatus(t, out, consistency.Pending)
	if op := b.op(t, sh.ID, out.OperationID); op.LastErrorCategory != connector.CategoryGeneric || op.Attempt != 1 {
		t.Errorf("operation = %+v", op)
	}
	if a := b.availability(t); a != consistency.Up {
		t.Errorf("a generic error marked the resource %v", a)
	}
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Completed != 1 || res.Retried != 1 {
		t.Errorf("refresh = %+v", res)
	}
	b.wantObject(t, "alice", "mail", "x")
}

// Retries are counted; after OperationRetryMaxAttempts retries the
// operation is given up with an abandoned event and the shadow needs
// reconciliation.
func TestRetryGiveUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	b.conn.FailNextOp(memconn.CallModify, 100, errNotSent("modify"))
	out := b.modify(t, sh.ID, replace("mail", "x"))
	wantStatus(t, out, consistency.Pending)
	for attempt := 2; attempt <= 4; attempt++ {
		b.clock.Advance(30*time.Minute - time.Second)
		if res := b.refresh(t, sh.ID); res.Retried != 0 {
			t.Fatalf("attempt %d: retried before the period: %+v", attempt, res)
		}
		b.clock.Advance(time.Second)
		res := b.refresh(t, sh.ID)
		op := b.op(t, sh.ID, out.OperationID)
		if op.Attempt != attempt || res.Retried != 1 {
			t.Fatalf("attempt %d: operation %+v, refresh %+v", attempt, op, res)
		}
		if attempt < 4 {
			if op.Completed() || res.StillPending != 1 || !op.NextAttemptAt.Equal(b.clock.Now().Add(30*time.Minute)) {
				t.Fatalf("attempt %d: operation %+v, refresh %+v, want pending for another period", attempt, op, res)
			}
			continue
		}
		if !op.Completed() || op.Result != shadow.ResultFailure || res.Abandoned != 1 || res.StillPending != 0 {
			t.Fatalf("last attempt: operation %+v, refresh %+v, want abandoned", op, res)
		}
	}
	b.wantCalls(t, memconn.CallModify, 4)
	if got := b.shadow(t, sh.ID); !got.NeedsReconciliation || got.Dead {
		t.Errorf("shadow = %+v, want needs reconciliation", got)
	}
	ab := b.events.of("abandoned")
	if len(ab) != 1 || ab[0].Op.Attempt != 4 || ab[0].Op.Category != connector.CategoryNotSent {
		t.Errorf("abandoned events = %+v", ab)
	}
	if n := len(b.events.of("retried")); n != 3 {
		t.Errorf("retried events = %d, want 3", n)
	}
	b.clock.Advance(24 * time.Hour)
	b.refresh(t, sh.ID)
	b.wantCalls(t, memconn.CallModify, 4)
}

func TestMaxAttemptsZeroDisablesRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) { s.OperationRetryMaxAttempts = 0 })})
	sh := b.live(t, "alice")
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	out, err := b.eng.Modify(b.ctx, sh.ID, replace("mail", "x"))
	if !errors.Is(err, connector.ErrNotSent) {
		t.Fatalf("modify error = %v, want the communication error", err)
	}
	wantStatus(t, out, consistency.Failed)
	if got := b.shadow(t, sh.ID); !got.NeedsReconciliation || got.Unfinished() {
		t.Errorf("shadow = %+v", got)
	}
	if len(b.events.of("abandoned")) != 1 {
		t.Errorf("events = %v", b.events.kinds())
	}

	b.conn.FailNextOp(memconn.CallAdd, 1, errNotSent("add"))
	b.clock.Advance(time.Hour) // past the probe interval
	out, err = b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "bob", Attributes: attrs("bob")})
	if err == nil || out.Status != consistency.Failed || !b.shadow(t, out.Shadow.ID).Dead {
		t.Errorf("add with retry disabled: %v, %+v", err, out)
	}
}

// A communication failure during a retry counts as an attempt and keeps the
// operation pending; the error reaches neither the caller nor refresh.
func TestRetryFailureKeepsPending(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.conn.Down()
	out := b.add(t, "alice")
	b.clock.Advance(time.Hour)
	b.conn.Up()
	b.conn.FailNextOp(memconn.CallAdd, 1, errNotSent("add"))
	res := b.refresh(t, out.Shadow.ID)
	if res.Retried != 1 || res.StillPending != 1 {
		t.Errorf("refresh = %+v", res)
	}
	op := b.op(t, out.Shadow.ID, 1)
	if op.Attempt != 2 || op.Completed() || op.LastErrorCategory != connector.CategoryNotSent {
		t.Errorf("operation = %+v", op)
	}
}

func TestBackoffKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		backoff consistency.Backoff
		random  func() float64
		want    []time.Duration // waits after attempts 1, 2, ...
	}{
		{"default fixed", nil, nil, []time.Duration{30 * time.Minute, 30 * time.Minute, 30 * time.Minute}},
		{"fixed", consistency.FixedBackoff{Period: 10 * time.Minute}, nil, []time.Duration{10 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
		{"exponential with cap and jitter",
			consistency.ExponentialBackoff{Base: time.Minute, Factor: 2, Cap: 5 * time.Minute, Jitter: 0.2},
			func() float64 { return 0.75 }, // +10%
			[]time.Duration{66 * time.Second, 132 * time.Second, 264 * time.Second, 330 * time.Second, 330 * time.Second}},
		{"exponential without jitter", consistency.ExponentialBackoff{Base: time.Minute, Factor: 3},
			func() float64 { return 0.99 }, []time.Duration{time.Minute, 3 * time.Minute, 9 * time.Minute}},
		{"schedule", consistency.ScheduleBackoff{Waits: []time.Duration{6 * time.Hour, 12 * time.Hour, 24 * time.Hour}}, nil,
			[]time.Duration{6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 24 * time.Hour, 24 * time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{random: tc.random, settings: settings(func(s *consistency.Settings) {
				s.Backoff = tc.backoff
				s.OperationRetryMaxAttempts = 10
				s.ProbeInterval = 0
			})})
			sh := b.live(t, "alice")
			b.conn.FailNextOp(memconn.CallModify, len(tc.want), errNotSent("modify"))
			out := b.modify(t, sh.ID, replace("mail", "x"))
			for i, want := range tc.want {
				op := b.op(t, sh.ID, out.OperationID)
				if op.Attempt != i+1 {
					t.Fatalf("attempt = %d, want %d", op.Attempt, i+1)
				}
				if got := op.NextAttemptAt.Sub(op.LastAttemptAt); got != want {
					t.Errorf("wait after attempt %d = %v, want %v", i+1, got, want)
				}
				b.clock.Advance(want - time.Millisecond)
				if res := b.refresh(t, sh.ID); res.Retried != 0 {
					t.Fatalf("retried %v early", time.Millisecond)
				}
				b.clock.Advance(time.Millisecond)
				b.refresh(t, sh.ID)
			}
			if op := b.op(t, sh.ID, out.OperationID); op.Result != shadow.ResultSuccess {
				t.Errorf("operation = %+v, want success after the faults", op)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		b        consistency.Backoff
		attempts int
		rnd      float64
		want     time.Duration
	}{
		{"fixed", consistency.FixedBackoff{Period: time.Minute}, 7, 0.3, time.Minute},
		{"exponential first", consistency.ExponentialBackoff{Base: time.Second, Factor: 2}, 1, 0.5, time.Second},
		{"exponential zero attempts", consistency.ExponentialBackoff{Base: time.Second, Factor: 2}, 0, 0.5, time.Second},
		{"exponential third", consistency.ExponentialBackoff{Base: time.Second, Factor: 2}, 3, 0.5, 4 * time.Second},
		{"exponential capped", consistency.ExponentialBackoff{Base: time.Second, Factor: 2, Cap: 3 * time.Second}, 10, 0.5, 3 * time.Second},
		{"exponential jitter low", consistency.ExponentialBackoff{Base: 10 * time.Second, Factor: 1, Jitter: 0.5}, 1, 0, 5 * time.Second},
		{"exponential huge without cap", consistency.ExponentialBackoff{Base: time.Hour, Factor: 10}, 200, 0.5, time.Duration(1<<63 - 1)},
		{"exponential huge with jitter", consistency.ExponentialBackoff{Base: time.Hour, Factor: 10, Jitter: 0.5}, 200, 0.99, time.Duration(1<<63 - 1)},
		{"schedule first", consistency.ScheduleBackoff{Waits: []time.Duration{time.Hour, 2 * time.Hour}}, 1, 0, time.Hour},
		{"schedule zero attempts", consistency.ScheduleBackoff{Waits: []time.Duration{time.Hour, 2 * time.Hour}}, 0, 0, time.Hour},
		{"schedule past the end", consistency.ScheduleBackoff{Waits: []time.Duration{time.Hour, 2 * time.Hour}}, 9, 0, 2 * time.Hour},
	} {
		if got := tc.b.Delay(tc.attempts, tc.rnd); got != tc.want {
			t.Errorf("%s: Delay(%d, %v) = %v, want %v", tc.name, tc.attempts, tc.rnd, got, tc.want)
		}
	}
}

func TestThrottlingHonoursRetryAfterAndDoesNotCount(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	until := t0.Add(2 * time.Hour)
	b.conn.Throttle(until)
	out := b.modify(t, sh.ID, replace("mail", "x"))
	wantStatus(t, out, consistency.Pending)
	op := b.op(t, sh.ID, out.OperationID)
	if op.Attempt != 0 || !op.NextAttemptAt.Equal(until) || op.LastErrorCategory != connector.CategoryThrottled {
		t.Errorf("throttled operation = %+v, want no attempt counted and next attempt at %v", op, until)
	}
	if a := b.availability(t); a != consistency.Up {
		t.Errorf("throttling marked the resource %v", a)
	}
	b.clock.Advance(time.Hour) // past the retry period, before Retry-After
	if res := b.refresh(t, sh.ID); res.Retried != 0 || res.Completed != 0 {
		t.Errorf("refresh before Retry-After = %+v", res)
	}
	b.wantCalls(t, memconn.CallModify, 1)
	b.clock.Advance(time.Hour)
	if res := b.refresh(t, sh.ID); res.Completed != 1 {
		t.Errorf("refresh at Retry-After = %+v", res)
	}
	if op := b.op(t, sh.ID, out.OperationID); op.Attempt != 1 || op.Result != shadow.ResultSuccess {
		t.Errorf("operation = %+v, want one counted attempt", op)
	}
	b.wantObject(t, "alice", "mail", "x")
}

func TestThrottledWithoutRetryAfterWaitsRetryPeriod(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	b.conn.FailNext(1, connector.CategoryThrottled)
	out := b.modify(t, sh.ID, replace("mail", "x"))
	if op := b.op(t, sh.ID, out.OperationID); !op.NextAttemptAt.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("NextAttemptAt = %v, want the retry period", op.NextAttemptAt)
	}
}

// An outcome-unknown add that reached the resource is linked by name on the
// retry: one object, no second add.
func TestOutcomeUnknownAddIsLinkedNotDuplicated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		withName bool
		adds     int
	}{
		{"looked up by name", true, 1},
		{"no name: the second add's collision is ours", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			b.conn.FailNextAfterApply(1)
			req := consistency.AddRequest{ResourceID: resID, Class: account, Attributes: attrs("alice")}
			if tc.withName {
				req.Name = "alice"
			}
			out, err := b.eng.Add(b.ctx, req)
			wantNoErr(t, err)
			wantStatus(t, out, consistency.Pending)
			if op := b.op(t, out.Shadow.ID, 1); op.LastErrorCategory != connector.CategoryOutcomeUnknown {
				t.Errorf("operation = %+v", op)
			}
			b.clock.Advance(30 * time.Minute)
			if res := b.refresh(t, out.Shadow.ID); res.Completed != 1 {
				t.Errorf("refresh = %+v", res)
			}
			objs := b.conn.Objects(account)
			sh := b.shadow(t, out.Shadow.ID)
			if len(objs) != 1 || !sh.Live() || sh.UID != objs[0].ID.UID || sh.Name != "alice" {
				t.Errorf("objects %v, shadow %+v: want one object linked", objs, sh)
			}
			b.wantCalls(t, memconn.CallAdd, tc.adds)
		})
	}
}

// An add whose outcome is unknown stays unknown when the check before the
// retry cannot reach the resource: the add is still not duplicated or
// reported as a collision with someone else's object.
func TestOutcomeUnknownSurvivesFailedCheck(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.conn.FailNextAfterApply(1)
	out := b.add(t, "alice")
	b.clock.Advance(30 * time.Minute)
	b.conn.FailNextOp(memconn.CallGet, 1, errNotSent("get"))
	if res := b.refresh(t, out.Shadow.ID); res.StillPending != 1 {
		t.Fatalf("refresh = %+v", res)
	}
	if op := b.op(t, out.Shadow.ID, 1); op.LastErrorCategory != connector.CategoryOutcomeUnknown {
		t.Errorf("after a failed check the operation is %v, want still outcome unknown", op.LastErrorCategory)
	}
	// Throttled checks keep it unknown too.
	b.clock.Advance(30 * time.Minute)
	b.conn.FailNextOp(memconn.CallGet, 1, &connector.Error{Category: connector.CategoryThrottled, RetryAfter: b.clock.Now().Add(time.Minute)})
	b.refresh(t, out.Shadow.ID)
	if op := b.op(t, out.Shadow.ID, 1); op.LastErrorCategory != connector.CategoryOutcomeUnknown || op.Attempt != 2 {
		t.Errorf("after a throttled check the operation is %+v", op)
	}
	// A delete now must not cancel it.
	wantStatus(t, b.del(t, out.Shadow.ID), consistency.Pending)
	b.clock.Advance(time.Hour)
	b.refresh(t, out.Shadow.ID)
	if b.conn.Len(account) != 0 || !b.shadow(t, out.Shadow.ID).Dead {
		t.Errorf("objects = %v, want the add linked and then deleted", b.conn.Objects(account))
	}
	b.wantCalls(t, memconn.CallAdd, 1)
	if n, _ := b.store.Count(b.ctx, shadow.Query{}); n != 1 {
		t.Errorf("shadows = %d, want no discovered duplicate", n)
	}
}

func TestOutcomeUnknownModifyIsCheckedBeforeRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		applied  bool
		modifies int
	}{
		{"took effect", true, 1},
		{"did not take effect", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			sh := b.live(t, "alice", "mail", "old")
			if tc.applied {
				b.conn.FailNextAfterApply(1)
			} else {
				b.conn.FailNextOp(memconn.CallModify, 1, connector.NewError(connector.CategoryOutcomeUnknown, "modify", errors.New("timeout")))
			}
			out := b.modify(t, sh.ID, replace("mail", "new"))
			wantStatus(t, out, consistency.Pending)
			gets := b.conn.Calls(memconn.CallGet)
			b.clock.Advance(30 * time.Minute)
			if res := b.refresh(t, sh.ID); res.Completed != 1 {
				t.Errorf("refresh = %+v", res)
			}
			b.wantCalls(t, memconn.CallGet, gets+1)
			b.wantCalls(t, memconn.CallModify, tc.modifies)
			b.wantObject(t, "alice", "mail", "new")
			if got := b.shadow(t, sh.ID); got.Attributes.Get("mail") != "new" {
				t.Errorf("cache = %v", got.Attributes)
			}
		})
	}
}

func TestOutcomeUnknownDeleteIsCheckedBeforeRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	b.conn.FailNextAfterApply(1)
	wantStatus(t, b.del(t, sh.ID), consistency.Pending)
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
	b.wantCalls(t, memconn.CallDelete, 1)
	if !b.shadow(t, sh.ID).Dead {
		t.Error("shadow not dead")
	}
}

// A process that died during an add left the shadow with the add "in
// flight" (write-ahead). Refresh checks the resource by name first.
func TestWriteAheadCrashRecovery(t *testing.T) {
	t.Parallel()
	for _, reached := range []bool{true, false} {
		t.Run(map[bool]string{true: "add reached the resource", false: "add was lost"}[reached], func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			if reached {
				_, err := b.conn.Put(account, attrs("bob", "mail", "b"))
				wantNoErr(t, err)
			}
			sh := &shadow.Shadow{ResourceID: resID, Class: account, Name: "bob", Origin: shadow.OriginAssigned,
				Pending: []shadow.PendingOperation{{ID: 1, Type: shadow.OpRetry, Status: shadow.StatusExecuting,
					Result: shadow.ResultInProgress, Attempt: 1,
					Delta:       connector.Delta{Type: connector.DeltaAdd, Attributes: attrs("bob", "mail", "b")},
					RequestedAt: t0, LastAttemptAt: t0, NextAttemptAt: t0.Add(30 * time.Minute),
					LastError: "in flight", LastErrorCategory: connector.CategoryOutcomeUnknown}},
				NextDue: t0.Add(30 * time.Minute)}
			wantNoErr(t, b.store.Create(b.ctx, sh))
			if res := b.refresh(t, sh.ID); res.Retried != 0 {
				t.Fatalf("refresh of an in-flight add before its period = %+v", res)
			}
			b.clock.Advance(30 * time.Minute)
			if res := b.refresh(t, sh.ID); res.Completed != 1 {
				t.Errorf("refresh = %+v", res)
			}
			want := 0
			if !reached {
				want = 1
			}
			b.wantCalls(t, memconn.CallAdd, want)
			obj := b.wantObject(t, "bob", "mail", "b")
			if got := b.shadow(t, sh.ID); !got.Live() || got.UID != obj.ID.UID || b.conn.Len(account) != 1 {
				t.Errorf("shadow = %+v", got)
			}
		})
	}
}

// The engine writes ahead before each retry too: a shadow saved while a
// retry was in flight is checked, not re-added.
func TestRetryIsWrittenAhead(t *testing.T) {
	t.Parallel()
	var b *bundle
	checking, seen := false, false
	hook := &hookConn{Conn: memconn.New(memconn.Options{}), beforeAdd: func() {
		if !checking {
			return
		}
		seen = true
		sh, err := b.store.List(b.ctx, shadow.Query{})
		if err != nil || len(sh) != 1 {
			t.Errorf("list: %v %d", err, len(sh))
			return
		}
		op := sh[0].Operation(1)
		if op.Status != shadow.StatusExecuting || op.LastErrorCategory != connector.CategoryOutcomeUnknown || op.Attempt != 2 {
			t.Errorf("stored operation during the retry = %+v, want in flight", op)
		}
	}}
	b = setup(t, setupOpts{conn: hook})
	hook.Conn.Down()
	out, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "a", Attributes: attrs("a")})
	wantNoErr(t, err)
	hook.Conn.Up()
	checking = true
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, out.Shadow.ID); res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
	if !seen {
		t.Error("the retry did not call Add")
	}
	if op := b.op(t, out.Shadow.ID, 1); op.Result != shadow.ResultSuccess || op.LastError != "" {
		t.Errorf("operation after the retry = %+v", op)
	}
}

// hookConn is a memconn with a hook before Add and an optional Modify
// override.
type hookConn struct {
	*memconn.Conn
	beforeAdd func()
	modify    func(ctx context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error)
}

func (h *hookConn) Add(ctx context.Context, class connector.ObjectClass, a connector.Attributes) (connector.Result, error) {
	if h.beforeAdd != nil {
		h.beforeAdd()
	}
	return h.Conn.Add(ctx, class, a)
}

func (h *hookConn) Modify(ctx context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
	if h.modify != nil {
		return h.modify(ctx, class, id, changes)
	}
	return h.Conn.Modify(ctx, class, id, changes)
}

// A caller that cancels during the call leaves the operation pending with
// outcome unknown; the resource is not marked down for it.
func TestContextCancelledMidCall(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	hook := &hookConn{Conn: memconn.New(memconn.Options{})}
	hook.modify = func(_ context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
		res, err := hook.Conn.Modify(context.Background(), class, id, changes) // the request went out
		if err != nil {
			return res, err
		}
		cancel()
		return connector.Result{}, ctx.Err()
	}
	b := setup(t, setupOpts{conn: hook})
	sh := b.live(t, "alice")
	out, err := b.eng.Modify(ctx, sh.ID, replace("mail", "x"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	wantStatus(t, out, consistency.Pending)
	op := b.op(t, sh.ID, out.OperationID)
	if op.Completed() || op.LastErrorCategory != connector.CategoryOutcomeUnknown || op.Attempt != 1 {
		t.Errorf("operation = %+v, want pending with outcome unknown", op)
	}
	if a := b.availability(t); a != consistency.Up {
		t.Errorf("the caller's cancellation marked the resource %v", a)
	}
	// The retry checks and finds the change made: no second modify.
	hook.modify = nil
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
	if n := hook.Conn.Calls(memconn.CallModify); n != 1 {
		t.Errorf("modify calls = %d, want 1", n)
	}
}

func TestContextCancelledBeforeCallIsNotSentAndResourceStaysUp(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	hook := &hookConn{Conn: memconn.New(memconn.Options{})}
	hook.modify = func(ctx context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
		cancel()
		return hook.Conn.Modify(ctx, class, id, changes) // memconn: not sent
	}
	b := setup(t, setupOpts{conn: hook})
	sh := b.live(t, "alice")
	out, err := b.eng.Modify(ctx, sh.ID, replace("mail", "x"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v", err)
	}
	wantStatus(t, out, consistency.Pending)
	if op := b.op(t, sh.ID, out.OperationID); op.LastErrorCategory != connector.CategoryNotSent || op.Completed() {
		t.Errorf("operation = %+v", op)
	}
	if a := b.availability(t); a != consistency.Up {
		t.Errorf("availability = %v, want up", a)
	}
}

// failingStore fails the next n updates.
type failingStore struct {
	shadow.Store
	mu sync.Mutex
	n  int
}

func (s *failingStore) failNext(n int) {
	s.mu.Lock()
	s.n = n
	s.mu.Unlock()
}

func (s *failingStore) Update(ctx context.Context, sh *shadow.Shadow) error {
	s.mu.Lock()
	fail := s.n > 0
	if fail {
		s.n--
	}
	s.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return s.Store.Update(ctx, sh)
}

// A retry whose write-ahead cannot be stored is not sent, and not counted.
func TestRetryNotSentWhenWriteAheadFails(t *testing.T) {
	t.Parallel()
	fs := &failingStore{}
	b := setup(t, setupOpts{wrapStore: func(s shadow.Store) shadow.Store { fs.Store = s; return fs },
		// The add's record is dropped in the same refresh, so the refresh
		// does save the shadow after the failed write-ahead.
		settings: settings(func(s *consistency.Settings) { s.PendingOperationRetentionPeriod = 10 * time.Minute })})
	sh := b.live(t, "alice")
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	out := b.modify(t, sh.ID, replace("mail", "x"))
	b.clock.Advance(30 * time.Minute)
	fs.failNext(1)
	if _, err := b.eng.RefreshShadow(b.ctx, sh.ID); err == nil {
		t.Error("refresh with a failing store returned no error")
	}
	b.wantCalls(t, memconn.CallModify, 1)
	if op := b.op(t, sh.ID, out.OperationID); op.Attempt != 1 || op.Status != shadow.StatusPendingExecution {
		t.Errorf("operation after a failed write-ahead = %+v", op)
	}
	if res := b.refresh(t, sh.ID); res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
	if op := b.op(t, sh.ID, out.OperationID); op.Attempt != 2 {
		t.Errorf("attempts = %d, want 2", op.Attempt)
	}
}

// A throttled resource is not called by anything before its Retry-After:
// other shadows' operations wait without a call, due when it ends.
func TestThrottleHoldsTheWholeResource(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	a, c := b.live(t, "alice"), b.live(t, "carol")
	failed := b.live(t, "dave")
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	b.modify(t, failed.ID, replace("mail", "d")) // a retry due at +30m
	wantNoErr(t, b.eng.MarkUp(resID))
	until := t0.Add(2 * time.Hour)
	b.conn.Throttle(until)
	b.conn.ResetCalls()
	wantStatus(t, b.modify(t, a.ID, replace("mail", "a")), consistency.Pending)
	out := b.modify(t, c.ID, replace("mail", "c"))
	wantStatus(t, out, consistency.Pending)
	if got := b.calls(); got[memconn.CallModify] != 1 || len(got) != 1 {
		t.Errorf("calls while throttled = %v, want only the first modify", got)
	}
	if st, _ := b.eng.Status(resID); !st.ThrottledUntil.Equal(until) || st.Availability != consistency.Up {
		t.Errorf("status = %+v", st)
	}
	if op := b.op(t, c.ID, out.OperationID); !op.NextAttemptAt.Equal(until) || op.Attempt != 0 {
		t.Errorf("operation postponed by the throttle = %+v", op)
	}
	// The retry that falls due meanwhile waits too, and is due at the end.
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, failed.ID); res.Skipped == "" || res.Retried != 0 {
		t.Errorf("refresh while throttled = %+v", res)
	}
	if got := b.shadow(t, failed.ID).NextDue; !got.Equal(until) {
		t.Errorf("NextDue while throttled = %v, want %v", got, until)
	}
	b.wantCalls(t, memconn.CallModify, 1)
	b.clock.Advance(90 * time.Minute)
	for _, id := range []string{a.ID, c.ID, failed.ID} {
		if res := b.refresh(t, id); res.Completed != 1 {
			t.Errorf("refresh of %s after the throttle = %+v", id, res)
		}
	}
	b.wantCalls(t, memconn.CallModify, 4)
}

// A refresh cancelled before its call went out does not spend an attempt.
func TestCancelledRefreshDoesNotCountAttempt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var b *bundle
	hook := &hookConn{Conn: memconn.New(memconn.Options{})}
	b = setup(t, setupOpts{conn: hook, settings: settings(func(s *consistency.Settings) { s.OperationRetryMaxAttempts = 1 })})
	sh := b.live(t, "alice")
	hook.Conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	out := b.modify(t, sh.ID, replace("mail", "x"))
	hook.modify = func(ctx context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
		cancel() // shutting down: the call is not made
		return hook.Conn.Modify(ctx, class, id, changes)
	}
	b.clock.Advance(30 * time.Minute)
	if _, err := b.eng.RefreshShadow(ctx, sh.ID); err != nil {
		t.Logf("refresh: %v", err)
	}
	op := b.op(t, sh.ID, out.OperationID)
	if op.Attempt != 1 || op.Completed() || !op.NextAttemptAt.Equal(b.clock.Now()) {
		t.Errorf("operation after a cancelled refresh = %+v, want still one attempt and due", op)
	}
	if len(b.events.of("abandoned")) != 0 {
		t.Error("a cancelled refresh gave the operation up")
	}
	hook.modify = nil
	if res := b.refresh(t, sh.ID); res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
}

// A caller whose context ends just after the resource answered gets the
// outcome, not an error that would make it try again.
func TestContextCancelledAfterSuccessIsNotAnError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hook := &hookConn{Conn: memconn.New(memconn.Options{})}
	b := setup(t, setupOpts{conn: hook})
	sh := b.live(t, "alice")
	hook.modify = func(_ context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
		res, err := hook.Conn.Modify(context.Background(), class, id, changes)
		cancel()
		return res, err
	}
	out, err := b.eng.Modify(ctx, sh.ID, replace("mail", "x"))
	wantNoErr(t, err)
	wantStatus(t, out, consistency.Done)
	if got := b.shadow(t, sh.ID); got.Attributes.Get("mail") != "x" || got.Unfinished() {
		t.Errorf("shadow = %+v", got)
	}
}
