package memconn_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
)

const cls connector.ObjectClass = "account"

func user(name string, more ...string) connector.Attributes {
	a := connector.Attributes{"uid": {name}}
	for i := 0; i+1 < len(more); i += 2 {
		a[more[i]] = append(a[more[i]], more[i+1])
	}
	return a
}

func wantCat(t *testing.T, what string, err error, c connector.Category) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error; want %s", what, c)
	}
	if got := connector.Classify(err); got != c || !errors.Is(err, c.Sentinel()) {
		t.Fatalf("%s: error %v has category %s; want %s", what, err, got, c)
	}
}

// must returns v, and panics (failing the test) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// everyCall makes one call of every kind and returns their errors by kind.
func everyCall(c *memconn.Conn) map[memconn.CallKind]error {
	ctx := context.Background()
	errs := map[memconn.CallKind]error{}
	_, errs[memconn.CallAdd] = c.Add(ctx, cls, user("every"))
	_, errs[memconn.CallModify] = c.Modify(ctx, cls, connector.Identifiers{Name: "every"}, nil)
	_, errs[memconn.CallGet] = c.Get(ctx, cls, connector.Identifiers{Name: "every"})
	errs[memconn.CallSearch] = c.Search(ctx, cls, connector.SearchOptions{}, func(connector.Object) error { return nil })
	_, errs[memconn.CallFetch] = c.FetchChanges(ctx, cls, "", 0)
	_, errs[memconn.CallLatestToken] = c.LatestToken(ctx, cls)
	errs[memconn.CallTest] = c.Test(ctx)
	_, errs[memconn.CallStatus] = c.OperationStatus(ctx, "a-000001")
	_, errs[memconn.CallDelete] = c.Delete(ctx, cls, connector.Identifiers{Name: "every"})
	return errs
}

func TestDownUp(t *testing.T) {
	t.Parallel()
	c := memconn.New(memconn.Options{})
	c.Down()
	if !c.IsDown() {
		t.Fatal("IsDown after Down is false")
	}
	for kind, err := range everyCall(c) {
		wantCat(t, string(kind), err, connector.CategoryNotSent)
		if !errors.Is(err, memconn.ErrInjected) || !errors.Is(err, connector.ErrCommunication) {
			t.Errorf("%s: %v is not ErrInjected and ErrCommunication", kind, err)
		}
	}
	for _, k := range memconn.CallKinds {
		if n := c.Calls(k); n != 1 {
			t.Errorf("Calls(%s) = %d while down; want 1", k, n)
		}
	}
	if c.Len(cls) != 0 || c.Changes(cls) != 0 {
		t.Fatalf("a call while down changed the resource: %d objects, %d changes", c.Len(cls), c.Changes(cls))
	}
	c.Up()
	errs := everyCall(c)
	for _, k := range []memconn.CallKind{memconn.CallAdd, memconn.CallModify, memconn.CallGet, memconn.CallSearch, memconn.CallFetch, memconn.CallLatestToken, memconn.CallTest, memconn.CallDelete} {
		if errs[k] != nil {
			t.Errorf("%s after Up: %v", k, errs[k])
		}
	}
	wantCat(t, "status of an unknown ref", errs[memconn.CallStatus], connector.CategoryNotFound)
	if got := c.CallCounts(); got[memconn.CallAdd] != 2 || got[memconn.CallStatus] != 2 || len(got) != len(memconn.CallKinds) {
		t.Errorf("CallCounts = %v", got)
	}
	c.ResetCalls()
	if c.Calls(memconn.CallAdd) != 0 || c.Calls("nonsense") != 0 {
		t.Errorf("after ResetCalls Calls(add) = %d", c.Calls(memconn.CallAdd))
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{})
	id := must(c.Put(cls, user("a")))
	c.FailNext(2, connector.CategoryPermission)
	_, err := c.Get(ctx, cls, id)
	wantCat(t, "first failed call", err, connector.CategoryPermission)
	_, err = c.Add(ctx, cls, user("b"))
	wantCat(t, "second failed call", err, connector.CategoryPermission)
	if _, ok := c.ObjectByName(cls, "b"); ok {
		t.Fatal("a failed Add created its object")
	}
	must(c.Add(ctx, cls, user("b")))
	c.FailNext(5, connector.CategorySchema)
	c.FailNext(0, connector.CategorySchema)
	must(c.Get(ctx, cls, id))
}

func TestFailNextAfterApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{})
	c.FailNextAfterApply(3)
	// Reads are not affected and do not use up the count.
	if _, err := c.LatestToken(ctx, cls); err != nil {
		t.Fatal(err)
	}
	_, err := c.Add(ctx, cls, user("a"))
	wantCat(t, "add", err, connector.CategoryOutcomeUnknown)
	o, ok := c.ObjectByName(cls, "a")
	if !ok {
		t.Fatal("the add that reported outcome unknown did not take effect")
	}
	_, err = c.Modify(ctx, cls, o.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "description", Values: []string{"d"}}})
	wantCat(t, "modify", err, connector.CategoryOutcomeUnknown)
	if got, _ := c.Object(cls, o.ID.UID); got.Attributes.Get("description") != "d" {
		t.Fatalf("the modify that reported outcome unknown did not take effect: %v", got.Attributes)
	}
	_, err = c.Delete(ctx, cls, o.ID)
	wantCat(t, "delete", err, connector.CategoryOutcomeUnknown)
	if _, ok := c.Object(cls, o.ID.UID); ok {
		t.Fatal("the delete that reported outcome unknown did not take effect")
	}
	must(c.Add(ctx, cls, user("b")))
	// A write that fails on its own merits reports that, not outcome unknown.
	c.FailNextAfterApply(1)
	_, err = c.Add(ctx, cls, user("b"))
	wantCat(t, "duplicate add", err, connector.CategoryAlreadyExists)
}

func TestFailNextOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{})
	id := must(c.Put(cls, user("a")))
	boom := errors.New("boom")
	c.FailNextOp(memconn.CallModify, 2, boom)
	c.FailNext(1, connector.CategoryThrottled) // per-kind faults come first
	if _, err := c.Modify(ctx, cls, id, nil); !errors.Is(err, boom) {
		t.Fatalf("modify: %v; want boom", err)
	}
	_, err := c.Get(ctx, cls, id)
	wantCat(t, "get after FailNext(1)", err, connector.CategoryThrottled)
	if _, err := c.Modify(ctx, cls, id, nil); !errors.Is(err, boom) {
		t.Fatalf("second modify: %v; want boom", err)
	}
	must(c.Modify(ctx, cls, id, nil))
	c.FailNextOp(memconn.CallGet, 1, nil)
	_, err = c.Get(ctx, cls, id)
	wantCat(t, "get with a nil injected error", err, connector.CategoryGeneric)
	c.FailNextOp(memconn.CallGet, 1, boom)
	c.FailNextOp(memconn.CallGet, 0, nil)
	must(c.Get(ctx, cls, id))
	defer func() {
		if recover() == nil {
			t.Error("FailNextOp of an unknown kind did not panic")
		}
	}()
	c.FailNextOp("teleport", 1, nil)
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := connector.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	c := memconn.New(memconn.Options{Clock: clk})
	until := clk.Now().Add(time.Minute)
	c.Throttle(until)
	err := c.Test(ctx)
	wantCat(t, "throttled test", err, connector.CategoryThrottled)
	if got := connector.RetryAfter(err); !got.Equal(until) {
		t.Fatalf("RetryAfter = %v; want %v", got, until)
	}
	clk.Advance(59 * time.Second)
	wantCat(t, "still throttled", c.Test(ctx), connector.CategoryThrottled)
	clk.Advance(time.Second)
	if err := c.Test(ctx); err != nil {
		t.Fatalf("after the throttle ended: %v", err)
	}
	c.Throttle(clk.Now().Add(time.Hour))
	c.Throttle(time.Time{})
	if err := c.Test(ctx); err != nil {
		t.Fatalf("after the throttle was cleared: %v", err)
	}
}

func TestContextAndLatency(t *testing.T) {
	t.Parallel()
	c := memconn.New(memconn.Options{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := c.Add(ctx, cls, user("slow"))
	wantCat(t, "add cancelled during latency", err, connector.CategoryNotSent)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v is not context.DeadlineExceeded", err)
	}
	if c.Len(cls) != 0 {
		t.Fatal("the cancelled add took effect")
	}
	fast := memconn.New(memconn.Options{Latency: time.Microsecond})
	must(fast.Add(context.Background(), cls, user("quick")))
}

func TestNamingAndSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{NamingAttribute: "cn", ClassNamingAttributes: map[connector.ObjectClass]string{"group": "name"}})
	if c.NamingAttribute("group") != "name" || c.NamingAttribute(cls) != "cn" {
		t.Fatalf("NamingAttribute: %q, %q", c.NamingAttribute("group"), c.NamingAttribute(cls))
	}
	res := must(c.Add(ctx, "group", connector.Attributes{"name": {"admins"}}))
	if res.ID.Name != "admins" || res.ID.UID != "u-000001" {
		t.Fatalf("Add returned %+v", res.ID)
	}
	for _, bad := range []connector.Attributes{
		{"uid": {"x"}},           // no cn
		{"cn": {"a", "b"}},       // two names
		{"cn": {""}},             // empty name
		{"cn": {"x"}, "": {"v"}}, // attribute without a name
	} {
		_, err := c.Add(ctx, cls, bad)
		wantCat(t, fmt.Sprintf("Add(%v)", bad), err, connector.CategorySchema)
	}
	id := must(c.Add(ctx, cls, connector.Attributes{"cn": {"x"}, "mail": {"b", "a", "a"}})).ID
	if got, _ := c.Object(cls, id.UID); !slices.Equal(got.Attributes["mail"], []string{"a", "b"}) {
		t.Errorf("values are not kept as a sorted set: %q", got.Attributes["mail"])
	}
	_, err := c.Modify(ctx, cls, id, []connector.AttributeDelta{{Op: connector.DeleteValues, Name: "cn"}})
	wantCat(t, "removing the naming attribute", err, connector.CategorySchema)
	_, err = c.Modify(ctx, cls, id, []connector.AttributeDelta{{Op: 9, Name: "cn"}})
	wantCat(t, "unknown operation", err, connector.CategorySchema)
	must(c.Add(ctx, cls, connector.Attributes{"cn": {"y"}}))
	_, err = c.Modify(ctx, cls, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "cn", Values: []string{"y"}}})
	wantCat(t, "rename onto a taken name", err, connector.CategoryAlreadyExists)
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Existing == nil || ce.Existing.Name != "y" {
		t.Fatalf("rename conflict does not name the existing object: %#v", err)
	}
	_, err = c.Add(ctx, cls, connector.Attributes{"cn": {"y"}})
	if !errors.As(err, &ce) || ce.Existing == nil || ce.Existing.Name != "y" || ce.Existing.UID == "" {
		t.Fatalf("add conflict does not name the existing object: %#v", err)
	}
	// Identifiers: UID first, Name when UID is empty, nothing when neither.
	_, err = c.Get(ctx, cls, connector.Identifiers{})
	wantCat(t, "Get of no identifiers", err, connector.CategoryNotFound)
	_, err = c.Get(ctx, "no-such-class", connector.Identifiers{UID: id.UID})
	wantCat(t, "Get in an unknown class", err, connector.CategoryNotFound)
	if o := must(c.Get(ctx, cls, connector.Identifiers{UID: id.UID, Name: "ignored"})); o.ID != id {
		t.Fatalf("Get by UID with a wrong Name: %+v", o.ID)
	}
}

func TestRenameChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{PreciseTokens: true})
	id := must(c.Put(cls, user("old")))
	res := must(c.Modify(ctx, cls, connector.Identifiers{Name: "old"}, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{"new"}}}))
	if res.ID != (connector.Identifiers{UID: id.UID, Name: "new"}) {
		t.Fatalf("rename returned %+v", res.ID)
	}
	b := must(c.FetchChanges(ctx, cls, "1", 0))
	if len(b.Changes) != 1 {
		t.Fatalf("got %d changes", len(b.Changes))
	}
	ch := b.Changes[0]
	if ch.Type != connector.ChangeModify || ch.ID.Name != "new" || ch.OldName != "old" || ch.Token != "2" || ch.Object.Get("uid") != "new" {
		t.Fatalf("rename change %+v", ch)
	}
	if _, ok := c.ObjectByName(cls, "old"); ok {
		t.Fatal("the old name still finds the object")
	}
	if _, ok := c.ObjectByName(cls, ""); ok {
		t.Fatal("the empty name finds an object")
	}
}

func TestDirectManipulation(t *testing.T) {
	t.Parallel()
	c := memconn.New(memconn.Options{})
	a := must(c.Put(cls, user("a", "description", "one")))
	b := must(c.Put(cls, user("b")))
	if _, err := c.Put(cls, user("a")); err == nil {
		t.Fatal("Put of a duplicate name succeeded")
	}
	nb := must(c.Set(cls, b.UID, user("b2", "description", "set")))
	if nb.Name != "b2" {
		t.Fatalf("Set renamed to %+v", nb)
	}
	must(c.ModifyDirect(cls, a.UID, connector.AttributeDelta{Op: connector.AddValues, Name: "description", Values: []string{"two"}}))
	if _, err := c.Set(cls, "u-999999", user("z")); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("Set of a missing object: %v", err)
	}
	if _, err := c.Set(cls, a.UID, connector.Attributes{"": {"x"}}); !errors.Is(err, connector.ErrSchema) {
		t.Fatalf("Set with a nameless attribute: %v", err)
	}
	objs := c.Objects(cls)
	if len(objs) != 2 || objs[0].ID != a || objs[1].ID != nb {
		t.Fatalf("Objects = %+v", objs)
	}
	if !objs[0].Attributes.Equal(user("a", "description", "one", "description", "two")) {
		t.Fatalf("object a = %v", objs[0].Attributes)
	}
	objs[0].Attributes["description"][0] = "scribbled"
	if o, _ := c.Object(cls, a.UID); o.Attributes.Get("description") == "scribbled" {
		t.Fatal("Objects shares memory with the resource")
	}
	if err := c.Remove(cls, a.UID); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(cls, a.UID); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	if _, ok := c.Object(cls, a.UID); ok || c.Len(cls) != 1 {
		t.Fatalf("after Remove: Len %d", c.Len(cls))
	}
	if c.Objects("empty") != nil || c.Len("empty") != 0 || c.Changes("empty") != 0 {
		t.Fatal("an unknown class is not empty")
	}
	// Every direct change is in the log, in order, and no call was counted.
	b2 := must(c.FetchChanges(context.Background(), cls, "", 0))
	var got []string
	for _, ch := range b2.Changes {
		got = append(got, ch.Type.String()+" "+ch.ID.Name)
	}
	want := []string{"create a", "create b", "modify b2", "modify a", "delete a"}
	if !slices.Equal(got, want) {
		t.Fatalf("change log %q; want %q", got, want)
	}
	if c.Changes(cls) != 5 {
		t.Fatalf("Changes = %d", c.Changes(cls))
	}
	if n := c.Calls(memconn.CallAdd) + c.Calls(memconn.CallModify) + c.Calls(memconn.CallDelete); n != 0 {
		t.Fatalf("direct manipulation counted %d calls", n)
	}
}

func TestFetchChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, precise := range []bool{true, false} {
		for _, omit := range []bool{true, false} {
			t.Run(fmt.Sprintf("precise=%v,omit=%v", precise, omit), func(t *testing.T) {
				t.Parallel()
				c := memconn.New(memconn.Options{PreciseTokens: precise, OmitChangeAttributes: omit, MaxFetch: 3})
				if c.PreciseTokens() != precise {
					t.Fatal("PreciseTokens does not report the option")
				}
				if tok := must(c.LatestToken(ctx, cls)); tok != "0" {
					t.Fatalf("LatestToken of an empty log = %q", tok)
				}
				for i := range 5 {
					must(c.Put(cls, user(fmt.Sprint(i), "description", "d")))
				}
				if tok := must(c.LatestToken(ctx, cls)); tok != "5" {
					t.Fatalf("LatestToken = %q", tok)
				}
				b := must(c.FetchChanges(ctx, cls, "", 0))
				if len(b.Changes) != 3 || !b.More || b.Token != "3" {
					t.Fatalf("first batch: %d changes, More %v, Token %q", len(b.Changes), b.More, b.Token)
				}
				for i, ch := range b.Changes {
					wantTok := connector.Token("")
					if precise {
						wantTok = connector.Token(fmt.Sprint(i + 1))
					}
					if ch.Token != wantTok || ch.ID.Name != fmt.Sprint(i) || ch.Class != cls {
						t.Errorf("change %d: %+v", i, ch)
					}
					if omit != (ch.Object == nil) {
						t.Errorf("change %d: Object %v with OmitChangeAttributes %v", i, ch.Object, omit)
					}
				}
				if !omit {
					b.Changes[0].Object["description"][0] = "scribbled"
					b.Changes[0].Object["uid"] = append(b.Changes[0].Object["uid"], "appended")
					if b.Changes[1].Object.Get("description") != "d" || b.Changes[1].Object.Get("uid") != "1" {
						t.Fatalf("changes of one batch share values: %v", b.Changes[1].Object)
					}
				}
				b = must(c.FetchChanges(ctx, cls, "0", 1))
				if len(b.Changes) != 1 || b.Token != "1" || (!omit && b.Changes[0].Object.Get("description") != "d") {
					t.Fatalf("refetch: %+v", b)
				}
				b = must(c.FetchChanges(ctx, cls, "3", 10))
				if len(b.Changes) != 2 || b.More || b.Token != "5" {
					t.Fatalf("last batch: %d changes, More %v, Token %q", len(b.Changes), b.More, b.Token)
				}
				b = must(c.FetchChanges(ctx, cls, "5", 10))
				if len(b.Changes) != 0 || b.More || b.Token != "5" {
					t.Fatalf("empty batch: %+v", b)
				}
				for _, bad := range []connector.Token{"x", "-1", "6", "1.5"} {
					_, err := c.FetchChanges(ctx, cls, bad, 0)
					wantCat(t, "token "+string(bad), err, connector.CategorySchema)
					if !strings.Contains(err.Error(), string(bad)) {
						t.Errorf("error %q does not name the token %q", err, bad)
					}
				}
				if b := must(c.FetchChanges(ctx, "other", "", 0)); len(b.Changes) != 0 || b.Token != "0" {
					t.Fatalf("another class's stream: %+v", b)
				}
			})
		}
	}
}

func TestAsync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{Async: true})
	res := must(c.Add(ctx, cls, user("a")))
	if res.Async == "" || !res.ID.IsZero() {
		t.Fatalf("async Add returned %+v", res)
	}
	if c.Len(cls) != 0 {
		t.Fatal("the async add took effect before it was completed")
	}
	st := must(c.OperationStatus(ctx, res.Async))
	if st.State != connector.AsyncInProgress {
		t.Fatalf("status %+v", st)
	}
	if _, err := c.Add(ctx, cls, connector.Attributes{"cn": {"no uid"}}); !errors.Is(err, connector.ErrSchema) {
		t.Fatalf("async Add without naming attribute: %v", err)
	}
	if _, err := c.Modify(ctx, cls, connector.Identifiers{Name: "a"}, []connector.AttributeDelta{{Name: "x"}}); !errors.Is(err, connector.ErrSchema) {
		t.Fatalf("async Modify with a bad change: %v", err)
	}
	if p := c.PendingAsync(); !slices.Equal(p, []string{res.Async}) {
		t.Fatalf("PendingAsync = %q", p)
	}
	if err := c.CompleteAsync(res.Async); err != nil {
		t.Fatal(err)
	}
	st = must(c.OperationStatus(ctx, res.Async))
	if st.State != connector.AsyncDone || st.ID.Name != "a" || st.ID.UID == "" || st.Err != nil {
		t.Fatalf("status after completion %+v", st)
	}
	if err := c.CompleteAsync(res.Async); err == nil {
		t.Fatal("completing twice succeeded")
	}
	wantCat(t, "complete unknown", c.CompleteAsync("nope"), connector.CategoryNotFound)
	wantCat(t, "fail unknown", c.FailAsync("nope", nil), connector.CategoryNotFound)

	// An operation that fails when carried out ends failed, with its error.
	dup := must(c.Add(ctx, cls, user("a")))
	mod := must(c.Modify(ctx, cls, connector.Identifiers{Name: "missing"}, nil))
	del := must(c.Delete(ctx, cls, connector.Identifiers{Name: "a"}))
	rej := must(c.Add(ctx, cls, user("rejected")))
	rej2 := must(c.Add(ctx, cls, user("rejected2")))
	if err := c.FailAsync(rej.Async, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.FailAsync(rej2.Async, connector.NewError(connector.CategoryPolicy, "add", errors.New("no"))); err != nil {
		t.Fatal(err)
	}
	if n := c.CompleteAllAsync(); n != 3 {
		t.Fatalf("CompleteAllAsync completed %d", n)
	}
	for _, tc := range []struct {
		ref string
		cat connector.Category
	}{{dup.Async, connector.CategoryAlreadyExists}, {mod.Async, connector.CategoryNotFound}, {rej.Async, connector.CategoryGeneric}, {rej2.Async, connector.CategoryPolicy}} {
		st := must(c.OperationStatus(ctx, tc.ref))
		if st.State != connector.AsyncFailed {
			t.Fatalf("%s: state %s", tc.ref, st.State)
		}
		wantCat(t, tc.ref, st.Err, tc.cat)
	}
	if st := must(c.OperationStatus(ctx, del.Async)); st.State != connector.AsyncDone || c.Len(cls) != 0 {
		t.Fatalf("async delete: %+v, %d objects", st, c.Len(cls))
	}
	// Outcome unknown after the request went out: the operation is under way.
	c.FailNextAfterApply(1)
	_, err := c.Add(ctx, cls, user("b"))
	wantCat(t, "async add with outcome unknown", err, connector.CategoryOutcomeUnknown)
	if len(c.PendingAsync()) != 1 {
		t.Fatal("the async add whose reply was lost is not under way")
	}
	c.SetAsync(false)
	if res := must(c.Add(ctx, cls, user("c"))); res.Async != "" || res.ID.Name != "c" {
		t.Fatalf("Add after SetAsync(false): %+v", res)
	}
	c.CompleteAllAsync()
	if _, ok := c.ObjectByName(cls, "b"); !ok {
		t.Fatal("the pending add was not carried out")
	}
}

func TestSearchPagesAndCompaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{})
	var ids []connector.Identifiers
	for i := range 300 {
		ids = append(ids, must(c.Put(cls, user(fmt.Sprintf("n%03d", i)))))
	}
	for i, id := range ids {
		if i%3 != 0 {
			if err := c.Remove(cls, id.UID); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	err := c.Search(ctx, cls, connector.SearchOptions{PageSize: 7}, func(o connector.Object) error {
		got = append(got, o.ID.Name)
		if len(got) == 10 { // writes during a search do not deadlock
			must(c.Put(cls, user("late")))
			must(c.Get(ctx, cls, o.ID))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < 300; i += 3 {
		want = append(want, fmt.Sprintf("n%03d", i))
	}
	want = append(want, "late")
	if !slices.Equal(got, want) {
		t.Fatalf("search returned %d objects %q...; want %d", len(got), got[:min(5, len(got))], len(want))
	}
	if len(c.Objects(cls)) != len(want) {
		t.Fatalf("Objects has %d", len(c.Objects(cls)))
	}
	n := 0
	if err := c.Search(ctx, "none", connector.SearchOptions{}, func(connector.Object) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("search of an empty class: %v, %d", err, n)
	}
	if err := c.Search(ctx, cls, connector.SearchOptions{Name: "nobody"}, func(connector.Object) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("search of a missing name: %v, %d", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	err = c.Search(cctx, cls, connector.SearchOptions{PageSize: 2}, func(connector.Object) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("search cancelled between pages: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := memconn.New(memconn.Options{PreciseTokens: true})
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := must(c.Add(ctx, cls, user(fmt.Sprintf("w%d-%d", w, i)))).ID
				must(c.Modify(ctx, cls, id, []connector.AttributeDelta{{Op: connector.AddValues, Name: "mail", Values: []string{"m"}}}))
				if i%2 == 0 {
					must(c.Delete(ctx, cls, id))
				}
			}
		})
	}
	wg.Go(func() {
		var tok connector.Token
		seen := 0
		for seen < workers*each*5/2 {
			b := must(c.FetchChanges(ctx, cls, tok, 7))
			seen += len(b.Changes)
			tok = b.Token
		}
	})
	wg.Wait()
	if c.Len(cls) != workers*each/2 || c.Changes(cls) != workers*each*5/2 || c.Calls(memconn.CallAdd) != workers*each {
		t.Fatalf("Len %d, Changes %d, adds %d", c.Len(cls), c.Changes(cls), c.Calls(memconn.CallAdd))
	}
}

// BenchmarkFetchChanges measures live sync through a 100k-change log in
// batches of 1000.
func BenchmarkFetchChanges(b *testing.B) {
	ctx := context.Background()
	const n = 100_000
	c := memconn.New(memconn.Options{PreciseTokens: true})
	for i := range n {
		if _, err := c.Put(cls, user(fmt.Sprintf("user-%d", i), "mail", "x@example.com", "description", "bench")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	total := 0
	for b.Loop() {
		tok := connector.Token("")
		for {
			batch, err := c.FetchChanges(ctx, cls, tok, 1000)
			if err != nil {
				b.Fatal(err)
			}
			total += len(batch.Changes)
			tok = batch.Token
			if !batch.More {
				break
			}
		}
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkPut measures how fast a test can fill the resource (and its
// change log).
func BenchmarkPut(b *testing.B) {
	c := memconn.New(memconn.Options{PreciseTokens: true})
	attrs := user("", "mail", "x@example.com", "description", "bench")
	n := 0
	for b.Loop() {
		attrs["uid"] = []string{"user-" + strconv.Itoa(n)}
		n++
		if _, err := c.Put(cls, attrs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "puts/s")
}
