package shadow_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func validOp(id int64) shadow.PendingOperation {
	return shadow.PendingOperation{
		ID:          id,
		Delta:       connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"a@example.org"}}}},
		Type:        shadow.OpRetry,
		Status:      shadow.StatusPendingExecution,
		Result:      shadow.ResultInProgress,
		RequestedAt: t0,
	}
}

func validShadow() *shadow.Shadow {
	return &shadow.Shadow{
		ID:         "s1",
		ResourceID: "r1",
		Class:      "account",
		UID:        "u1",
		Name:       "uid=u1",
		Exists:     true,
		Origin:     shadow.OriginAssigned,
		Attributes: connector.Attributes{"cn": {"A"}},
		Pending:    []shadow.PendingOperation{validOp(1)},
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := validShadow().Validate(); err != nil {
		t.Fatalf("valid shadow: %v", err)
	}
	// A shadow that does not exist needs no identifiers.
	proposed := validShadow()
	proposed.Exists, proposed.UID, proposed.Name = false, "", ""
	if err := proposed.Validate(); err != nil {
		t.Fatalf("proposed shadow without identifiers: %v", err)
	}
	// Existing with only a Name is fine.
	named := validShadow()
	named.UID = ""
	if err := named.Validate(); err != nil {
		t.Fatalf("existing shadow with only a Name: %v", err)
	}

	tests := []struct {
		name  string
		spoil func(*shadow.Shadow)
		want  string // a part of the message naming what is wrong
	}{
		{"no resource", func(s *shadow.Shadow) { s.ResourceID = "" }, "ResourceID"},
		{"no class", func(s *shadow.Shadow) { s.Class = "" }, "Class"},
		{"zero origin", func(s *shadow.Shadow) { s.Origin = 0 }, "Origin"},
		{"unknown origin", func(s *shadow.Shadow) { s.Origin = 3 }, "Origin"},
		{"exists without identifiers", func(s *shadow.Shadow) { s.UID, s.Name = "", "" }, "UID and Name"},
		{"invalid delta", func(s *shadow.Shadow) { s.Pending[0].Delta.Type = 0 }, "Pending[0]"},
		{"modify carrying attributes", func(s *shadow.Shadow) {
			s.Pending[0].Delta.Attributes = connector.Attributes{"cn": {"x"}}
		}, "Pending[0]"},
		{"zero op type", func(s *shadow.Shadow) { s.Pending[0].Type = 0 }, "Type"},
		{"unknown op type", func(s *shadow.Shadow) { s.Pending[0].Type = shadow.OpAsync + 1 }, "Type"},
		{"zero status", func(s *shadow.Shadow) { s.Pending[0].Status = 0 }, "Status"},
		{"unknown status", func(s *shadow.Shadow) { s.Pending[0].Status = shadow.StatusCompleted + 1 }, "Status"},
		{"zero result", func(s *shadow.Shadow) { s.Pending[0].Result = 0 }, "Result"},
		{"unknown result", func(s *shadow.Shadow) { s.Pending[0].Result = shadow.ResultFailure + 1 }, "Result"},
		{"completed in progress", func(s *shadow.Shadow) { s.Pending[0].Status = shadow.StatusCompleted }, "completed"},
		{"negative attempt", func(s *shadow.Shadow) { s.Pending[0].Attempt = -1 }, "Attempt"},
		{"second op invalid", func(s *shadow.Shadow) {
			op := validOp(2)
			op.Type = 0
			s.Pending = append(s.Pending, op)
		}, "Pending[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sh := validShadow()
			tc.spoil(sh)
			err := sh.Validate()
			if err == nil {
				t.Fatal("Validate accepted the shadow")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate error %q does not name %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), `"s1"`) {
				t.Fatalf("Validate error %q does not name the shadow", err)
			}
		})
	}
}

func TestPendingOperationValidate(t *testing.T) {
	t.Parallel()
	for _, op := range []shadow.PendingOperation{
		validOp(1),
		{ID: 2, Delta: connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"cn": {"x"}}}, Type: shadow.OpGrouped, Status: shadow.StatusRequested, Result: shadow.ResultInProgress},
		{ID: 3, Delta: connector.Delta{Type: connector.DeltaDelete}, Type: shadow.OpAsync, Status: shadow.StatusCompleted, Result: shadow.ResultFailure, Attempt: 4},
		{ID: 4, Delta: connector.Delta{Type: connector.DeltaRecreate}, Type: shadow.OpRetry, Status: shadow.StatusExecuting, Result: shadow.ResultInProgress},
		{ID: 5, Delta: connector.Delta{Type: connector.DeltaModify}, Type: shadow.OpRetry, Status: shadow.StatusCompleted, Result: shadow.ResultSuccess},
	} {
		if err := op.Validate(); err != nil {
			t.Errorf("operation %d: %v", op.ID, err)
		}
	}
	bad := validOp(7)
	bad.Delta.Type = 99
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "operation 7") {
		t.Fatalf("Validate of a bad delta = %v, want an error naming operation 7", err)
	}
}

func op(id int64, t shadow.OpType, d connector.DeltaType, requested time.Time, done bool) shadow.PendingOperation {
	o := shadow.PendingOperation{ID: id, Delta: connector.Delta{Type: d}, Type: t,
		Status: shadow.StatusPendingExecution, Result: shadow.ResultInProgress, RequestedAt: requested}
	if done {
		o.Status, o.Result = shadow.StatusCompleted, shadow.ResultSuccess
	}
	return o
}

func TestState(t *testing.T) {
	t.Parallel()
	add := func(t shadow.OpType, done bool) shadow.PendingOperation {
		return op(1, t, connector.DeltaAdd, t0, done)
	}
	del := func(t shadow.OpType, done bool) shadow.PendingOperation {
		return op(2, t, connector.DeltaDelete, t0, done)
	}
	mod := op(3, shadow.OpRetry, connector.DeltaModify, t0, false)
	tests := []struct {
		name    string
		exists  bool
		dead    bool
		pending []shadow.PendingOperation
		want    shadow.State
	}{
		{"proposed: nothing pending", false, false, nil, shadow.StateProposed},
		{"proposed: grouped add", false, false, []shadow.PendingOperation{add(shadow.OpGrouped, false)}, shadow.StateProposed},
		{"proposed: add completed", false, false, []shadow.PendingOperation{add(shadow.OpRetry, true)}, shadow.StateProposed},
		{"being created: retry add", false, false, []shadow.PendingOperation{add(shadow.OpRetry, false)}, shadow.StateBeingCreated},
		{"being created: async add", false, false, []shadow.PendingOperation{add(shadow.OpAsync, false)}, shadow.StateBeingCreated},
		{"being created: add then modify", false, false, []shadow.PendingOperation{add(shadow.OpRetry, false), mod}, shadow.StateBeingCreated},
		{"live", true, false, nil, shadow.StateLive},
		{"live: modify pending", true, false, []shadow.PendingOperation{mod}, shadow.StateLive},
		{"live: delete completed", true, false, []shadow.PendingOperation{del(shadow.OpRetry, true)}, shadow.StateLive},
		{"being deleted: retry delete", true, false, []shadow.PendingOperation{del(shadow.OpRetry, false)}, shadow.StateBeingDeleted},
		{"being deleted: grouped delete", true, false, []shadow.PendingOperation{mod, del(shadow.OpGrouped, false)}, shadow.StateBeingDeleted},
		{"dead", false, true, nil, shadow.StateDead},
		{"dead wins over existing", true, true, nil, shadow.StateDead},
		{"dead wins over pending delete", true, true, []shadow.PendingOperation{del(shadow.OpRetry, false)}, shadow.StateDead},
		{"dead wins over pending add", false, true, []shadow.PendingOperation{add(shadow.OpRetry, false)}, shadow.StateDead},
	}
	for _, tc := range tests {
		sh := &shadow.Shadow{Exists: tc.exists, Dead: tc.dead, Pending: tc.pending}
		if got := sh.State(); got != tc.want {
			t.Errorf("%s: State() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		got, want string
	}{
		{shadow.OriginAssigned.String(), "assigned"},
		{shadow.OriginDiscovered.String(), "discovered"},
		{shadow.Origin(9).String(), "Origin(9)"},
		{shadow.StateProposed.String(), "proposed"},
		{shadow.StateBeingCreated.String(), "being created"},
		{shadow.StateLive.String(), "live"},
		{shadow.StateBeingDeleted.String(), "being deleted"},
		{shadow.StateDead.String(), "dead"},
		{shadow.State(0).String(), "State(0)"},
		{shadow.OpRetry.String(), "retry"},
		{shadow.OpGrouped.String(), "grouped"},
		{shadow.OpAsync.String(), "async"},
		{shadow.OpType(7).String(), "OpType(7)"},
		{shadow.StatusRequested.String(), "requested"},
		{shadow.StatusPendingExecution.String(), "pending execution"},
		{shadow.StatusExecuting.String(), "executing"},
		{shadow.StatusCompleted.String(), "completed"},
		{shadow.ExecStatus(0).String(), "ExecStatus(0)"},
		{shadow.ResultInProgress.String(), "in progress"},
		{shadow.ResultSuccess.String(), "success"},
		{shadow.ResultFailure.String(), "failure"},
		{shadow.OpResult(8).String(), "OpResult(8)"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
}

func TestClone(t *testing.T) {
	t.Parallel()
	if (*shadow.Shadow)(nil).Clone() != nil {
		t.Fatal("Clone of nil is not nil")
	}
	orig := validShadow()
	orig.Attributes = connector.Attributes{"cn": {"A", "B"}}
	orig.Pending = []shadow.PendingOperation{
		validOp(1),
		{ID: 2, Delta: connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"sn": {"S"}}}, Type: shadow.OpGrouped, Status: shadow.StatusRequested, Result: shadow.ResultInProgress},
	}
	orig.DeadSince, orig.NextDue = t0, t0.Add(time.Hour)
	c := orig.Clone()
	if diff := cmp.Diff(orig, c); diff != "" {
		t.Fatalf("clone differs (-orig +clone):\n%s", diff)
	}
	// Changing the clone deeply leaves the original alone.
	c.Attributes["cn"][0] = "changed"
	c.Attributes["new"] = []string{"x"}
	c.Pending[0].Delta.Changes[0].Values[0] = "changed"
	c.Pending[0].Delta.Changes[0].Name = "changed"
	c.Pending[1].Delta.Attributes["sn"][0] = "changed"
	c.Pending[1].Attempt = 5
	c.Pending = append(c.Pending, validOp(3))
	want := validShadow()
	want.Attributes = connector.Attributes{"cn": {"A", "B"}}
	want.Pending = []shadow.PendingOperation{
		validOp(1),
		{ID: 2, Delta: connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"sn": {"S"}}}, Type: shadow.OpGrouped, Status: shadow.StatusRequested, Result: shadow.ResultInProgress},
	}
	want.DeadSince, want.NextDue = t0, t0.Add(time.Hour)
	if diff := cmp.Diff(want, orig); diff != "" {
		t.Fatalf("changing the clone changed the original (-want +got):\n%s", diff)
	}

	// nil stays nil, empty stays empty.
	bare := &shadow.Shadow{ID: "x"}
	bc := bare.Clone()
	if bc.Attributes != nil || bc.Pending != nil {
		t.Fatalf("clone of a bare shadow has attributes %v, pending %v", bc.Attributes, bc.Pending)
	}
	empty := &shadow.Shadow{Pending: []shadow.PendingOperation{}}
	if ec := empty.Clone(); ec.Pending == nil {
		t.Fatal("clone of an empty pending list is nil")
	}
	if bc == bare {
		t.Fatal("Clone returned the same pointer")
	}
}

func TestOldestUnfinished(t *testing.T) {
	t.Parallel()
	sh := &shadow.Shadow{Pending: []shadow.PendingOperation{
		op(1, shadow.OpRetry, connector.DeltaModify, t0.Add(-5*time.Hour), true), // completed: ignored
		op(2, shadow.OpGrouped, connector.DeltaModify, t0.Add(-time.Hour), false),
		op(3, shadow.OpRetry, connector.DeltaModify, t0.Add(-2*time.Hour), false), // older, later in the list
		op(4, shadow.OpRetry, connector.DeltaModify, t0.Add(-30*time.Minute), false),
	}}
	tests := []struct {
		typ   shadow.OpType
		want  time.Time
		found bool
	}{
		{0, t0.Add(-2 * time.Hour), true},
		{shadow.OpRetry, t0.Add(-2 * time.Hour), true},
		{shadow.OpGrouped, t0.Add(-time.Hour), true},
		{shadow.OpAsync, time.Time{}, false},
	}
	for _, tc := range tests {
		got, found := sh.OldestUnfinished(tc.typ)
		if found != tc.found || !got.Equal(tc.want) {
			t.Errorf("OldestUnfinished(%v) = %v, %v; want %v, %v", tc.typ, got, found, tc.want, tc.found)
		}
	}
	if _, found := (&shadow.Shadow{}).OldestUnfinished(0); found {
		t.Error("OldestUnfinished of a shadow without operations found one")
	}
	done := &shadow.Shadow{Pending: []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaAdd, t0, true)}}
	if _, found := done.OldestUnfinished(0); found {
		t.Error("OldestUnfinished found a completed operation")
	}
	if done.Unfinished() {
		t.Error("Unfinished() with only completed operations")
	}
	if !sh.Unfinished() {
		t.Error("Unfinished() false with unfinished operations")
	}
	if (&shadow.Shadow{}).Unfinished() {
		t.Error("Unfinished() true without operations")
	}
}

func TestOperations(t *testing.T) {
	t.Parallel()
	sh := &shadow.Shadow{}
	if got := sh.NextOperationID(); got != 1 {
		t.Fatalf("NextOperationID of an empty shadow = %d, want 1", got)
	}
	if sh.Operation(1) != nil {
		t.Fatal("Operation(1) of an empty shadow is not nil")
	}
	sh.Pending = []shadow.PendingOperation{validOp(7), validOp(3), validOp(5)}
	if got := sh.NextOperationID(); got != 8 {
		t.Fatalf("NextOperationID = %d, want 8 (one above the highest)", got)
	}
	o := sh.Operation(3)
	if o == nil || o.ID != 3 {
		t.Fatalf("Operation(3) = %+v", o)
	}
	o.Attempt = 2 // a pointer into the shadow
	if sh.Pending[1].Attempt != 2 {
		t.Fatal("Operation did not return a pointer into the shadow's operations")
	}
	if sh.Operation(4) != nil {
		t.Fatal("Operation(4) found an operation that does not exist")
	}

	shadow.SortPending(sh.Pending)
	var got []int64
	for _, p := range sh.Pending {
		got = append(got, p.ID)
	}
	if !cmp.Equal(got, []int64{3, 5, 7}) {
		t.Fatalf("SortPending order = %v, want [3 5 7]", got)
	}
	// Stable for equal IDs.
	a, b := validOp(1), validOp(1)
	a.AsyncRef, b.AsyncRef = "first", "second"
	ops := []shadow.PendingOperation{validOp(2), a, b}
	shadow.SortPending(ops)
	if ops[0].AsyncRef != "first" || ops[1].AsyncRef != "second" || ops[2].ID != 2 {
		t.Fatalf("SortPending is not stable: %+v", ops)
	}
}

func TestIdentifiersAndLive(t *testing.T) {
	t.Parallel()
	sh := validShadow()
	if got := sh.Identifiers(); got != (connector.Identifiers{UID: "u1", Name: "uid=u1"}) {
		t.Fatalf("Identifiers() = %+v", got)
	}
	for _, tc := range []struct {
		exists, dead, want bool
	}{
		{true, false, true},
		{true, true, false},
		{false, false, false},
		{false, true, false},
	} {
		sh.Exists, sh.Dead = tc.exists, tc.dead
		if got := sh.Live(); got != tc.want {
			t.Errorf("Live() with Exists %v, Dead %v = %v, want %v", tc.exists, tc.dead, got, tc.want)
		}
	}
	if (&shadow.PendingOperation{Status: shadow.StatusExecuting}).Completed() {
		t.Error("an executing operation is Completed")
	}
	if !(&shadow.PendingOperation{Status: shadow.StatusCompleted}).Completed() {
		t.Error("a completed operation is not Completed")
	}
}
