package consistency_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

func TestRetentionAndDeadShadowExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) {
		s.PendingOperationRetentionPeriod = time.Hour
		s.DeadShadowRetentionPeriod = 2 * time.Hour
	})})
	sh := b.live(t, "alice")
	if due := b.shadow(t, sh.ID).NextDue; !due.Equal(t0.Add(time.Hour)) {
		t.Errorf("NextDue = %v, want the end of retention", due)
	}
	b.clock.Advance(30 * time.Minute)
	wantStatus(t, b.del(t, sh.ID), consistency.Done)
	b.clock.Advance(29 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Dropped != 0 {
		t.Errorf("refresh before retention = %+v", res)
	}
	b.clock.Advance(time.Minute)
	if res := b.refresh(t, sh.ID); res.Dropped != 1 || res.Deleted {
		t.Errorf("refresh after the add's retention = %+v", res)
	}
	got := b.shadow(t, sh.ID)
	if len(got.Pending) != 1 || !got.NextDue.Equal(t0.Add(90*time.Minute)) {
		t.Errorf("shadow = %+v, want the delete kept until %v", got, t0.Add(90*time.Minute))
	}
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Dropped != 1 || res.Deleted {
		t.Errorf("refresh after the delete's retention = %+v", res)
	}
	if due := b.shadow(t, sh.ID).NextDue; !due.Equal(t0.Add(150 * time.Minute)) {
		t.Errorf("NextDue = %v, want the end of dead retention", due)
	}
	b.clock.Advance(59 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Deleted {
		t.Errorf("dead shadow deleted early: %+v", res)
	}
	b.clock.Advance(time.Minute)
	if res := b.refresh(t, sh.ID); !res.Deleted {
		t.Errorf("refresh after dead retention = %+v", res)
	}
	if _, err := b.store.Get(b.ctx, sh.ID); !errors.Is(err, shadow.ErrNotFound) {
		t.Errorf("dead shadow still stored: %v", err)
	}
	// Refreshing a shadow that is gone is not an error.
	if res := b.refresh(t, sh.ID); res.Deleted || res.ShadowID != sh.ID {
		t.Errorf("refresh of a gone shadow = %+v", res)
	}
}

func TestQuarantine(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) {
		s.ProbeInterval = 0
		s.OperationRetryMaxAttempts = 10
		s.Quarantine = &consistency.QuarantinePolicy{MaxFailures: 1, Interval: 4 * time.Hour}
	})})
	a, c := b.live(t, "alice"), b.live(t, "carol")
	b.conn.FailNextOp(memconn.CallModify, 6, errNotSent("modify"))
	b.modify(t, a.ID, replace("mail", "x"))
	b.modify(t, c.ID, replace("mail", "x"))
	if got := b.eng.CheckQuarantine(); len(got) != 0 {
		t.Errorf("quarantined before any retry: %v", got)
	}

	b.clock.Advance(30 * time.Minute)
	b.refresh(t, a.ID)
	b.refresh(t, c.ID)
	if got := b.eng.CheckQuarantine(); !slices.Equal(got, []string{resID}) {
		t.Fatalf("CheckQuarantine = %v, want %s", got, resID)
	}
	if st, _ := b.eng.Status(resID); !st.Quarantined {
		t.Errorf("status = %+v", st)
	}
	if q := b.events.of("quarantine entered"); len(q) != 1 || q[0].Res.ResourceID != resID || q[0].Res.Reason == "" {
		t.Errorf("quarantine events = %+v", q)
	}
	// Already quarantined: not entered twice.
	if got := b.eng.CheckQuarantine(); len(got) != 0 {
		t.Errorf("entered twice: %v", got)
	}

	// The next failing retry waits the quarantine interval.
	b.clock.Advance(30 * time.Minute)
	b.refresh(t, a.ID)
	if op := b.op(t, a.ID, 2); op.NextAttemptAt.Sub(op.LastAttemptAt) != 4*time.Hour {
		t.Errorf("wait in quarantine = %v, want 4h", op.NextAttemptAt.Sub(op.LastAttemptAt))
	}
	b.clock.Advance(4*time.Hour - time.Second)
	if res := b.refresh(t, a.ID); res.Retried != 0 {
		t.Errorf("retried within the quarantine interval: %+v", res)
	}

	// The first successful retry ends the quarantine.
	b.conn.FailNextOp(memconn.CallModify, 0, nil)
	b.clock.Advance(time.Second)
	if res := b.refresh(t, a.ID); res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
	if st, _ := b.eng.Status(resID); st.Quarantined {
		t.Errorf("still quarantined: %+v", st)
	}
	if q := b.events.of("quarantine left"); len(q) != 1 {
		t.Errorf("quarantine left events = %+v", q)
	}
}

func TestQuarantineThresholds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		policy        consistency.QuarantinePolicy
		fails, passes int
		want          bool
	}{
		{"share above", consistency.QuarantinePolicy{FailureShare: 0.5}, 2, 1, true},
		{"share equal", consistency.QuarantinePolicy{FailureShare: 0.5}, 1, 1, false},
		{"share below minimum retries", consistency.QuarantinePolicy{FailureShare: 0.5, MinRetries: 3}, 2, 0, false},
		{"share at minimum retries", consistency.QuarantinePolicy{FailureShare: 0.5, MinRetries: 3}, 3, 0, true},
		{"count equal", consistency.QuarantinePolicy{MaxFailures: 2}, 2, 0, false},
		{"count above", consistency.QuarantinePolicy{MaxFailures: 2}, 3, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tc.policy
			b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) {
				s.ProbeInterval = 0
				s.Quarantine = &p
			})})
			var ids []string
			for i := range tc.fails + tc.passes {
				ids = append(ids, b.live(t, string(rune('a'+i))).ID)
			}
			for _, id := range ids {
				b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
				b.modify(t, id, replace("mail", "x"))
			}
			b.clock.Advance(30 * time.Minute)
			b.conn.FailNextOp(memconn.CallModify, tc.fails, errNotSent("modify"))
			for _, id := range ids {
				b.refresh(t, id)
			}
			if got := len(b.eng.CheckQuarantine()) == 1; got != tc.want {
				t.Errorf("quarantined = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStuckOperationsRetryNowAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	a, c := b.live(t, "alice"), b.live(t, "carol")
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	b.modify(t, c.ID, replace("mail", "c"))
	b.clock.Advance(time.Minute)
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	wantNoErr(t, b.eng.MarkUp(resID))
	b.modify(t, a.ID, replace("mail", "a"))
	// A postponed operation that was never attempted is not stuck.
	b.conn.Down()
	bob := b.add(t, "bob")
	b.conn.Up()

	stuck, err := b.eng.StuckOperations(b.ctx, resID)
	wantNoErr(t, err)
	if len(stuck) != 2 || stuck[0].ShadowID != c.ID || stuck[1].ShadowID != a.ID || stuck[0].Name != "carol" ||
		stuck[0].Class != account || stuck[0].Operation.Attempt != 1 {
		t.Fatalf("stuck = %+v, want carol's then alice's modify", stuck)
	}
	if _, err := b.eng.StuckOperations(b.ctx, "nope"); !errors.Is(err, consistency.ErrUnknownResource) {
		t.Errorf("unknown resource: %v", err)
	}

	// RetryNow pushes carol's through before its period, even while the
	// resource is marked down.
	res, err := b.eng.RetryNow(b.ctx, c.ID, stuck[0].Operation.ID)
	wantNoErr(t, err)
	if res.Completed != 1 {
		t.Errorf("RetryNow = %+v", res)
	}
	b.wantObject(t, "carol", "mail", "c")
	if _, err := b.eng.RetryNow(b.ctx, c.ID, stuck[0].Operation.ID); !errors.Is(err, consistency.ErrNoSuchOperation) {
		t.Errorf("RetryNow of a finished operation: %v", err)
	}

	// Cancel alice's: recorded with the reason, never sent.
	sh, err := b.eng.CancelOperation(b.ctx, a.ID, stuck[1].Operation.ID, "operator: wrong value")
	wantNoErr(t, err)
	op := sh.Operation(stuck[1].Operation.ID)
	if op.Result != shadow.ResultFailure || op.CancelReason != "operator: wrong value" || !sh.NeedsReconciliation {
		t.Errorf("cancelled: %+v, shadow needs reconciliation %v", op, sh.NeedsReconciliation)
	}
	if c := b.events.of("cancelled"); len(c) != 1 || c[0].Op.ShadowID != a.ID {
		t.Errorf("cancel events = %+v", c)
	}
	b.clock.Advance(time.Hour)
	b.refresh(t, a.ID)
	if obj := b.wantObject(t, "alice", "", ""); obj.Attributes.Get("mail") != "" {
		t.Errorf("cancelled modify reached the resource: %v", obj.Attributes)
	}
	if _, err := b.eng.CancelOperation(b.ctx, a.ID, 99, ""); !errors.Is(err, consistency.ErrNoSuchOperation) {
		t.Errorf("cancel of an unknown operation: %v", err)
	}

	// Cancelling a never-created add kills the shadow.
	sh, err = b.eng.CancelOperation(b.ctx, bob.Shadow.ID, 1, "")
	wantNoErr(t, err)
	if !sh.Dead || sh.Operation(1).CancelReason == "" {
		t.Errorf("shadow after cancelling its add = %+v", sh)
	}
	stuck, err = b.eng.StuckOperations(b.ctx, resID)
	wantNoErr(t, err)
	if len(stuck) != 0 {
		t.Errorf("stuck after all = %+v", stuck)
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.conn.Down()
	if err := b.eng.Probe(b.ctx, resID); !errors.Is(err, connector.ErrNotSent) {
		t.Errorf("probe of a down resource: %v", err)
	}
	if st, _ := b.eng.Status(resID); st.Availability != consistency.Down || !st.LastProbe.Equal(t0) {
		t.Errorf("status = %+v", st)
	}
	b.conn.Up()
	b.conn.FailNext(1, connector.CategoryConfiguration)
	if err := b.eng.Probe(b.ctx, resID); err == nil || b.availability(t) != consistency.Broken {
		t.Errorf("probe with bad configuration: %v, %v", err, b.availability(t))
	}
	wantNoErr(t, b.eng.Probe(b.ctx, resID))
	if b.availability(t) != consistency.Up {
		t.Errorf("availability = %v", b.availability(t))
	}
	if err := b.eng.Probe(b.ctx, "nope"); !errors.Is(err, consistency.ErrUnknownResource) {
		t.Errorf("probe of unknown resource: %v", err)
	}
}

func TestSettingsValidation(t *testing.T) {
	t.Parallel()
	if err := consistency.DefaultSettings().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, tc := range []struct {
		field  string
		change func(*consistency.Settings)
	}{
		{"DeadShadowRetentionPeriod", func(s *consistency.Settings) { s.DeadShadowRetentionPeriod = -1 }},
		{"OperationGroupingInterval", func(s *consistency.Settings) { s.OperationGroupingInterval = -1 }},
		{"PendingOperationGracePeriod", func(s *consistency.Settings) { s.PendingOperationGracePeriod = -1 }},
		{"PendingOperationRetentionPeriod", func(s *consistency.Settings) { s.PendingOperationRetentionPeriod = -time.Hour }},
		{"ProbeInterval", func(s *consistency.Settings) { s.ProbeInterval = -1 }},
		{"OperationRetryPeriod", func(s *consistency.Settings) { s.OperationRetryPeriod = 0 }},
		{"OperationRetryMaxAttempts", func(s *consistency.Settings) { s.OperationRetryMaxAttempts = -1 }},
		{"FixedBackoff.Period", func(s *consistency.Settings) { s.Backoff = consistency.FixedBackoff{} }},
		{"ExponentialBackoff.Base", func(s *consistency.Settings) { s.Backoff = consistency.ExponentialBackoff{Factor: 2} }},
		{"ExponentialBackoff.Factor", func(s *consistency.Settings) { s.Backoff = consistency.ExponentialBackoff{Base: 1, Factor: 0.5} }},
		{"ExponentialBackoff.Cap", func(s *consistency.Settings) { s.Backoff = consistency.ExponentialBackoff{Base: 1, Factor: 2, Cap: -1} }},
		{"ExponentialBackoff.Jitter", func(s *consistency.Settings) {
			s.Backoff = consistency.ExponentialBackoff{Base: 1, Factor: 2, Jitter: 1}
		}},
		{"ScheduleBackoff.Waits", func(s *consistency.Settings) { s.Backoff = consistency.ScheduleBackoff{} }},
		{"ScheduleBackoff.Waits[1]", func(s *consistency.Settings) {
			s.Backoff = consistency.ScheduleBackoff{Waits: []time.Duration{time.Hour, 0}}
		}},
		{"Quarantine.FailureShare", func(s *consistency.Settings) { s.Quarantine = &consistency.QuarantinePolicy{FailureShare: 1.5} }},
		{"Quarantine.MaxFailures", func(s *consistency.Settings) {
			s.Quarantine = &consistency.QuarantinePolicy{FailureShare: 0.5, MaxFailures: -1}
		}},
		{"Quarantine", func(s *consistency.Settings) { s.Quarantine = &consistency.QuarantinePolicy{} }},
		{"Quarantine.Interval", func(s *consistency.Settings) {
			s.Quarantine = &consistency.QuarantinePolicy{MaxFailures: 1, Interval: -1}
		}},
		{"Quarantine.MinRetries", func(s *consistency.Settings) {
			s.Quarantine = &consistency.QuarantinePolicy{MaxFailures: 1, MinRetries: -1}
		}},
	} {
		s := consistency.DefaultSettings()
		tc.change(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate = %v, want an error naming the field", tc.field, err)
		}
	}

	// Every problem at once.
	s := consistency.DefaultSettings()
	s.OperationRetryPeriod = -time.Minute
	s.DeadShadowRetentionPeriod = -time.Minute
	s.Backoff = consistency.ExponentialBackoff{Factor: -1, Jitter: -1}
	err := s.Validate()
	for _, field := range []string{"OperationRetryPeriod = -1m0s", "DeadShadowRetentionPeriod = -1m0s",
		"ExponentialBackoff.Base", "ExponentialBackoff.Factor = -1", "ExponentialBackoff.Jitter"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate = %v, want it to name %s", err, field)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	conn := memconn.New(memconn.Options{})
	bad := consistency.DefaultSettings()
	bad.OperationRetryPeriod = 0
	_, err := consistency.New(consistency.Config{
		Resources: []consistency.Resource{
			{ID: "a", Connector: conn},
			{ID: "a", Connector: conn},
			{ID: "", Connector: conn},
			{ID: "b"},
			{ID: "c", Connector: conn, Settings: &bad},
		},
	})
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for _, want := range []string{"Store is nil", `"a" repeats`, "Resources[2].ID is empty", `Resources[3] ("b").Connector is nil`,
		`Resources[4] ("c").Settings: OperationRetryPeriod`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := consistency.New(consistency.Config{Store: memstore.New(memstore.Options{})}); err == nil ||
		!strings.Contains(err.Error(), "Resources is empty") {
		t.Errorf("no resources: %v", err)
	}

	// Defaults and accessors.
	eng, err := consistency.New(consistency.Config{Store: memstore.New(memstore.Options{}),
		Resources: []consistency.Resource{{ID: "z", Connector: conn}, {ID: "y", Connector: conn}}})
	wantNoErr(t, err)
	if got := eng.ResourceIDs(); !slices.Equal(got, []string{"y", "z"}) {
		t.Errorf("ResourceIDs = %v", got)
	}
	if s, err := eng.Settings("y"); err != nil || s.OperationRetryPeriod != consistency.OperationRetryPeriodDefault {
		t.Errorf("Settings = %+v, %v", s, err)
	}
	if c, err := eng.Connector("y"); err != nil || c != conn {
		t.Errorf("Connector = %v, %v", c, err)
	}
	if eng.Store() == nil || eng.Clock() == nil {
		t.Error("Store or Clock is nil")
	}

	// Unknown resources.
	b := setup(t, setupOpts{})
	ctx := b.ctx
	checks := map[string]error{}
	_, checks["Add"] = b.eng.Add(ctx, consistency.AddRequest{ResourceID: "nope", Class: account, Attributes: attrs("x")})
	_, checks["Settings"] = b.eng.Settings("nope")
	_, checks["Connector"] = b.eng.Connector("nope")
	_, checks["Status"] = b.eng.Status("nope")
	checks["SetMaintenance"] = b.eng.SetMaintenance("nope", true)
	checks["MarkUp"] = b.eng.MarkUp("nope")
	for name, err := range checks {
		if !errors.Is(err, consistency.ErrUnknownResource) {
			t.Errorf("%s of an unknown resource: %v, want ErrUnknownResource", name, err)
		}
	}
	// A shadow of a resource the engine does not know.
	orphan := &shadow.Shadow{ResourceID: "gone", Class: account, Origin: shadow.OriginAssigned, Name: "o", UID: "u", Exists: true}
	wantNoErr(t, b.store.Create(ctx, orphan))
	if _, err := b.eng.Modify(ctx, orphan.ID, replace("a", "b")); !errors.Is(err, consistency.ErrUnknownResource) {
		t.Errorf("modify of a shadow on an unknown resource: %v", err)
	}
	if _, err := b.eng.RefreshShadow(ctx, orphan.ID); !errors.Is(err, consistency.ErrUnknownResource) {
		t.Errorf("refresh of a shadow on an unknown resource: %v", err)
	}
}

func TestRequestValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	if _, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Attributes: attrs("x")}); err == nil {
		t.Error("add without a class accepted")
	}
	if _, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Attributes: connector.Attributes{"": {"v"}}}); err == nil {
		t.Error("add with an empty attribute name accepted")
	}
	sh := b.live(t, "alice")
	if _, err := b.eng.Modify(b.ctx, sh.ID, []connector.AttributeDelta{{Op: 9, Name: "a"}}); err == nil {
		t.Error("modify with a bad operation accepted")
	}
	if _, err := b.eng.Modify(b.ctx, "missing", replace("a", "b")); !errors.Is(err, shadow.ErrNotFound) {
		t.Errorf("modify of a missing shadow: %v", err)
	}
	if _, err := b.eng.Get(b.ctx, "missing", consistency.GetOptions{}); !errors.Is(err, shadow.ErrNotFound) {
		t.Errorf("get of a missing shadow: %v", err)
	}
	if len(b.calls()) != 1 {
		t.Errorf("calls = %v", b.calls())
	}
}

func TestStringers(t *testing.T) {
	t.Parallel()
	for v, want := range map[interface{ String() string }]string{
		consistency.Done: "done", consistency.Pending: "pending", consistency.Queued: "queued",
		consistency.InProgress: "in progress", consistency.Failed: "failed", consistency.Status(99): "Status(99)",
		consistency.Up: "up", consistency.Down: "down", consistency.Broken: "broken",
		consistency.Maintenance: "maintenance", consistency.Availability(99): "Availability(99)",
	} {
		if got := v.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

// A dead shadow is deleted after DeadShadowRetentionPeriod even when
// completed operations would be kept longer; only the grace period of
// executed grouped or async operations holds it.
func TestDeadShadowExpiryIgnoresRetentionButHonoursGrace(t *testing.T) {
	t.Parallel()
	t.Run("retention longer than dead retention", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) {
			s.PendingOperationRetentionPeriod = 30 * 24 * time.Hour
			s.DeadShadowRetentionPeriod = time.Hour
		})})
		sh := b.live(t, "alice")
		b.del(t, sh.ID)
		if due := b.shadow(t, sh.ID).NextDue; !due.Equal(t0.Add(time.Hour)) {
			t.Errorf("NextDue = %v, want the dead retention's end", due)
		}
		b.clock.Advance(time.Hour)
		if res := b.refresh(t, sh.ID); !res.Deleted {
			t.Errorf("refresh = %+v, want the dead shadow deleted", res)
		}
	})
	t.Run("grace longer than dead retention", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) {
			s.OperationGroupingInterval = time.Minute
			s.PendingOperationRetentionPeriod = time.Minute
			s.PendingOperationGracePeriod = 2 * time.Hour
			s.DeadShadowRetentionPeriod = time.Hour
		})})
		id := b.add(t, "alice").Shadow.ID
		_, err := b.eng.PropagateShadow(b.ctx, id, true)
		wantNoErr(t, err)
		b.del(t, id)
		_, err = b.eng.PropagateShadow(b.ctx, id, true)
		wantNoErr(t, err)
		if sh := b.shadow(t, id); !sh.Dead || !sh.NextDue.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("shadow = %+v, want dead and due at the grace period's end", sh)
		}
		b.clock.Advance(time.Hour)
		if res := b.refresh(t, id); res.Deleted {
			t.Errorf("dead shadow deleted within the grace period: %+v", res)
		}
		b.clock.Advance(time.Hour)
		if res := b.refresh(t, id); !res.Deleted || res.Dropped != 2 {
			t.Errorf("refresh after the grace period = %+v", res)
		}
	})
}

// Throttled retries are not failures: they do not quarantine a resource.
func TestThrottledRetriesDoNotQuarantine(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) {
		s.ProbeInterval = 0
		s.Quarantine = &consistency.QuarantinePolicy{MaxFailures: 1}
	})})
	sh := b.live(t, "alice")
	b.conn.FailNextOp(memconn.CallModify, 2, errNotSent("modify"))
	out := b.modify(t, sh.ID, replace("mail", "x"))
	b.clock.Advance(30 * time.Minute)
	b.refresh(t, sh.ID) // attempt 2 fails
	if got := b.eng.CheckQuarantine(); len(got) != 0 {
		t.Fatalf("quarantined after one failed retry: %v", got)
	}
	b.clock.Advance(30 * time.Minute)
	throttled := &connector.Error{Category: connector.CategoryThrottled, Op: "modify",
		RetryAfter: b.clock.Now().Add(time.Second), Err: errors.New("429")}
	b.conn.FailNextOp(memconn.CallModify, 2, throttled)
	b.refresh(t, sh.ID) // attempt 3 throttled
	b.clock.Advance(time.Second)
	b.refresh(t, sh.ID) // attempt 3 throttled again
	if op := b.op(t, sh.ID, out.OperationID); op.Attempt != 2 || op.Completed() {
		t.Fatalf("operation = %+v, want two attempts counted", op)
	}
	if got := b.eng.CheckQuarantine(); len(got) != 0 {
		t.Errorf("quarantined after throttled retries: %v", got)
	}
}

// The engine keeps its own copy of the settings: the host's values changed
// afterwards (or those Settings returns) do not reach it.
func TestSettingsAreCopied(t *testing.T) {
	t.Parallel()
	waits := []time.Duration{time.Hour}
	s := settings(func(s *consistency.Settings) {
		s.Quarantine = &consistency.QuarantinePolicy{MaxFailures: 1, Interval: time.Hour}
		s.Backoff = consistency.ScheduleBackoff{Waits: waits}
	})
	b := setup(t, setupOpts{settings: s})
	s.Quarantine.Interval = -1
	waits[0] = -1
	got, err := b.eng.Settings(resID)
	wantNoErr(t, err)
	if got.Quarantine.Interval != time.Hour || got.Backoff.(consistency.ScheduleBackoff).Waits[0] != time.Hour {
		t.Errorf("engine settings changed with the host's: %+v", got)
	}
	got.Quarantine.Interval = -2
	again, _ := b.eng.Settings(resID)
	if again.Quarantine.Interval != time.Hour {
		t.Errorf("Settings handed out the engine's own policy")
	}
	sh := b.live(t, "alice")
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	out := b.modify(t, sh.ID, replace("mail", "x"))
	if op := b.op(t, sh.ID, out.OperationID); op.NextAttemptAt.Sub(op.LastAttemptAt) != time.Hour {
		t.Errorf("wait = %v, want the schedule's hour", op.NextAttemptAt.Sub(op.LastAttemptAt))
	}
}
