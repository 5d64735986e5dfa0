package manual

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

var personMu sync.Mutex

const class connector.ObjectClass = "account"

type bundle struct {
	fc   *connector.FakeClock
	sink *FileSink
	conn *Conn
	ctx  context.Context
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{fc: connector.NewFakeClock(t0), ctx: context.Background()}
	var err error
	if b.sink, err = NewFileSink(filepath.Join(t.TempDir(), "tickets"), b.fc); err != nil {
		t.Fatal(err)
	}
	n := 0
	if b.conn, err = New(Options{Sink: b.sink, Clock: b.fc, NewUID: func() string { n++; return fmt.Sprintf("u%d", n) }}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bundle) status(t *testing.T, ref string) connector.AsyncStatus {
	t.Helper()
	st, err := b.conn.OperationStatus(b.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (b *bundle) done(t *testing.T, ref string) {
	t.Helper()
	if err := MarkDone(b.sink.Dir(), ref); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) mustAdd(t *testing.T, attrs connector.Attributes) connector.Result {
	t.Helper()
	res, err := b.conn.Add(b.ctx, class, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestAddMakesATicketAndDoneCompletesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.mustAdd(t, connector.Attributes{"uid": {"alice"}, "mail": {"a@example.org"}})
	if res.Async != "T000000001" || res.ID != (connector.Identifiers{UID: "u1", Name: "alice"}) {
		t.Fatalf("Add = %+v", res)
	}
	data, err := os.ReadFile(filepath.Join(b.sink.Dir(), "T000000001.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tk Ticket
	if err := json.Unmarshal(data, &tk); err != nil {
		t.Fatal(err)
	}
	if tk.Operation != OpAdd || tk.Status != StatusOpen || tk.UID != "u1" || tk.Name != "alice" ||
		tk.Attributes.Get("mail") != "a@example.org" || !tk.CreatedAt.Equal(t0) || tk.Validate() != nil {
		t.Fatalf("ticket %+v (validate: %v)", tk, tk.Validate())
	}
	if fi, err := os.Stat(filepath.Join(b.sink.Dir(), "T000000001.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ticket file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if st := b.status(t, res.Async); st.State != connector.AsyncInProgress {
		t.Fatalf("open ticket: %v", st.State)
	}
	if _, err := b.conn.Get(b.ctx, class, res.ID); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("Get before the ticket is done: %v", err)
	}
	b.fc.Advance(time.Hour)
	if err := b.sink.Close(b.ctx, res.Async, Resolution{Status: StatusDone}); err != nil {
		t.Fatal(err)
	}
	st := b.status(t, res.Async)
	if st.State != connector.AsyncDone || st.ID != res.ID {
		t.Fatalf("done ticket: %+v", st)
	}
	got, _ := b.sink.Status(b.ctx, res.Async)
	if !got.ClosedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("ClosedAt %s", got.ClosedAt)
	}
	obj, err := b.conn.Get(b.ctx, class, connector.Identifiers{Name: "alice"})
	if err != nil || obj.ID.UID != "u1" || obj.Attributes.Get("mail") != "a@example.org" {
		t.Fatalf("Get after done: %+v %v", obj, err)
	}
	if err := b.sink.Close(b.ctx, res.Async, Resolution{Status: StatusRejected}); err == nil {
		t.Fatal("closing a done ticket again succeeded")
	}
}

func TestReadsReplayDoneTicketsInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	add := b.mustAdd(t, connector.Attributes{"uid": {"bob"}, "title": {"clerk"}})
	b.done(t, add.Async)
	id := add.ID
	mod, err := b.conn.Modify(b.ctx, class, id, []connector.AttributeDelta{
		{Op: connector.Replace, Name: "title", Values: []string{"boss"}},
		{Op: connector.Replace, Name: "uid", Values: []string{"robert"}}})
	if err != nil {
		t.Fatal(err)
	}
	if mod.ID != (connector.Identifiers{UID: "u1", Name: "robert"}) {
		t.Fatalf("Modify renaming: %+v", mod.ID)
	}
	open, err := b.conn.Modify(b.ctx, class, mod.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "title", Values: []string{"ceo"}}})
	if err != nil {
		t.Fatal(err)
	}
	b.done(t, mod.Async)
	if st := b.status(t, mod.Async); st.ID.Name != "robert" {
		t.Fatalf("status of the renaming ticket: %+v", st)
	}
	obj, err := b.conn.Get(b.ctx, class, connector.Identifiers{UID: "u1"})
	if err != nil || obj.ID.Name != "robert" || obj.Attributes.Get("title") != "boss" {
		t.Fatalf("after the done modify (the open one does not count): %+v %v", obj, err)
	}
	var names []string
	b.mustAdd(t, connector.Attributes{"uid": {"anna"}})
	done := b.mustAdd(t, connector.Attributes{"uid": {"zed"}})
	b.done(t, done.Async)
	err = b.conn.Search(b.ctx, class, connector.SearchOptions{}, func(o connector.Object) error {
		names = append(names, o.ID.Name)
		return nil
	})
	if err != nil || strings.Join(names, ",") != "robert,zed" {
		t.Fatalf("Search = %v, %v; want robert,zed (anna's ticket is open)", names, err)
	}
	stop := errors.New("stop")
	if err := b.conn.Search(b.ctx, class, connector.SearchOptions{Name: "zed"}, func(connector.Object) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Search by name with a failing fn: %v", err)
	}
	del, err := b.conn.Delete(b.ctx, class, connector.Identifiers{Name: "robert"})
	if err != nil || !del.ID.IsZero() {
		t.Fatalf("Delete: %+v %v", del, err)
	}
	b.done(t, del.Async)
	if st := b.status(t, del.Async); st.State != connector.AsyncDone || !st.ID.IsZero() {
		t.Fatalf("status of a done delete: %+v", st)
	}
	if _, err := b.conn.Get(b.ctx, class, connector.Identifiers{UID: "u1"}); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("Get after the delete: %v", err)
	}
	_ = open
}

func TestRejectedTicketsFailWithTheirCause(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.mustAdd(t, connector.Attributes{"uid": {"carl"}})
	if err := Reject(b.sink.Dir(), res.Async, "no budget for a licence"); err != nil {
		t.Fatal(err)
	}
	st := b.status(t, res.Async)
	if st.State != connector.AsyncFailed || !errors.Is(st.Err, connector.ErrPolicy) || !strings.Contains(st.Err.Error(), "no budget") {
		t.Fatalf("rejected ticket: %+v", st)
	}
	mod, err := b.conn.Modify(b.ctx, class, connector.Identifiers{UID: "gone"}, []connector.AttributeDelta{{Op: connector.Replace, Name: "x", Values: []string{"y"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sink.Close(b.ctx, mod.Async, Resolution{Status: StatusRejected, Cause: connector.CategoryNotFound}); err != nil {
		t.Fatal(err)
	}
	st = b.status(t, mod.Async)
	if !errors.Is(st.Err, connector.ErrNotFound) || !strings.Contains(st.Err.Error(), "no reason given") {
		t.Fatalf("rejected as not found: %+v", st)
	}
	// A communication category is no cause a person gives: policy.
	del, _ := b.conn.Delete(b.ctx, class, connector.Identifiers{UID: "x"})
	if err := b.sink.Close(b.ctx, del.Async, Resolution{Status: StatusRejected, Cause: connector.CategoryNotSent}); err != nil {
		t.Fatal(err)
	}
	if st := b.status(t, del.Async); !errors.Is(st.Err, connector.ErrPolicy) {
		t.Fatalf("rejected with a communication cause: %+v", st)
	}
	if err := b.sink.Close(b.ctx, del.Async, Resolution{Status: "maybe"}); err == nil {
		t.Fatal("closing with an unknown status succeeded")
	}
}

// A person edits the ticket file by hand.
func TestHandEditedTickets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.mustAdd(t, connector.Attributes{"uid": {"dora"}})
	path := filepath.Join(b.sink.Dir(), res.Async+".json")
	edit := func(from, to string) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edit(`"status": "open"`, `"status": "closed"`)
	if _, err := b.conn.OperationStatus(b.ctx, res.Async); !errors.Is(err, connector.ErrSchema) || !strings.Contains(err.Error(), `"closed"`) {
		t.Fatalf("mistyped status: %v", err)
	}
	edit(`"status": "closed"`, `"status": "rejected", "reason": "duplicate request", "cause": "Already Exists"`)
	if st := b.status(t, res.Async); !errors.Is(st.Err, connector.ErrAlreadyExists) || !strings.Contains(st.Err.Error(), "duplicate request") {
		t.Fatalf("hand-rejected ticket: %+v", st)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.conn.OperationStatus(b.ctx, res.Async); !errors.Is(err, connector.ErrSchema) {
		t.Fatalf("broken ticket file: %v", err)
	}
	if _, err := b.conn.Get(b.ctx, class, connector.Identifiers{UID: "u1"}); !errors.Is(err, connector.ErrSchema) {
		t.Fatalf("Get over a broken ticket file: %v", err)
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ch := []connector.AttributeDelta{{Op: connector.Replace, Name: "title", Values: []string{"x"}}}
	cases := map[string]error{}
	_, cases["add without naming attribute"] = b.conn.Add(b.ctx, class, connector.Attributes{"cn": {"x"}})
	_, cases["add without class"] = b.conn.Add(b.ctx, "", connector.Attributes{"uid": {"x"}})
	_, cases["add with an empty attribute name"] = b.conn.Add(b.ctx, class, connector.Attributes{"uid": {"x"}, "": {"y"}})
	_, cases["modify without identifiers"] = b.conn.Modify(b.ctx, class, connector.Identifiers{}, ch)
	_, cases["modify without class"] = b.conn.Modify(b.ctx, "", connector.Identifiers{UID: "u"}, ch)
	_, cases["modify with a bad op"] = b.conn.Modify(b.ctx, class, connector.Identifiers{UID: "u"}, []connector.AttributeDelta{{Op: 9, Name: "a"}})
	_, cases["modify clearing the name"] = b.conn.Modify(b.ctx, class, connector.Identifiers{UID: "u"}, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid"}})
	_, cases["delete without identifiers"] = b.conn.Delete(b.ctx, class, connector.Identifiers{})
	_, cases["get without identifiers"] = b.conn.Get(b.ctx, class, connector.Identifiers{})
	for what, err := range cases {
		if !errors.Is(err, connector.ErrSchema) {
			t.Errorf("%s: %v, want a schema error", what, err)
		}
	}
	if n, _ := os.ReadDir(b.sink.Dir()); len(n) != 0 {
		t.Fatalf("%d tickets made for invalid requests", len(n))
	}
	if _, err := b.conn.OperationStatus(b.ctx, "../../etc/passwd"); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("a path as reference: %v", err)
	}
	if _, err := b.conn.OperationStatus(b.ctx, "T999999999"); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("unknown reference: %v", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a sink succeeded")
	}
	if _, err := NewFileSink("", nil); err == nil {
		t.Fatal("NewFileSink of an empty name succeeded")
	}
}

func TestAddOfATakenNameFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.mustAdd(t, connector.Attributes{"uid": {"eve"}})
	b.done(t, res.Async)
	_, err := b.conn.Add(b.ctx, class, connector.Attributes{"uid": {"eve"}})
	var ce *connector.Error
	if !errors.As(err, &ce) || ce.Category != connector.CategoryAlreadyExists || ce.Existing == nil || ce.Existing.UID != "u1" {
		t.Fatalf("Add of a taken name: %v", err)
	}
	if _, err := b.conn.Add(b.ctx, "group", connector.Attributes{"uid": {"eve"}}); err != nil {
		t.Fatalf("the same name in another class: %v", err)
	}
}

// Two processes share one folder: references never collide.
func TestFileSinkReferencesAreUniqueAcrossSinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var sinks []*FileSink
	for i := 0; i < 3; i++ {
		s, err := NewFileSink(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		sinks = append(sinks, s)
	}
	var mu sync.Mutex
	refs := map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref, err := sinks[i%3].Create(context.Background(), Ticket{Operation: OpDelete, Class: class, UID: fmt.Sprint(i)})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if refs[ref] {
				t.Errorf("reference %s handed out twice", ref)
			}
			refs[ref] = true
		}()
	}
	wg.Wait()
	list, err := sinks[0].List(context.Background())
	if err != nil || len(list) != 30 {
		t.Fatalf("List: %d tickets, %v", len(list), err)
	}
	for i := 1; i < len(list); i++ {
		if list[i-1].Ref >= list[i].Ref {
			t.Fatalf("List out of order: %s before %s", list[i-1].Ref, list[i].Ref)
		}
	}
	// Foreign files in the folder are ignored.
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("tickets"), 0o600); err != nil {
		t.Fatal(err)
	}
	if list, err := sinks[1].List(context.Background()); err != nil || len(list) != 30 {
		t.Fatalf("List with a foreign file: %d, %v", len(list), err)
	}
}

func TestSinksStopOnCancelledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fs, err := NewFileSink(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]TicketSink{"file": fs, "mem": &MemSink{}} {
		if _, err := s.Create(ctx, Ticket{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s Create: %v", name, err)
		}
		if _, err := s.Status(ctx, "T000000001"); !errors.Is(err, context.Canceled) {
			t.Errorf("%s Status: %v", name, err)
		}
		if _, err := s.List(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s List: %v", name, err)
		}
	}
	if err := fs.Close(ctx, "T000000001", Resolution{Status: StatusDone}); !errors.Is(err, context.Canceled) {
		t.Errorf("file Close: %v", err)
	}
}

func TestMemSink(t *testing.T) {
	t.Parallel()
	s := &MemSink{}
	ctx := context.Background()
	ref, err := s.Create(ctx, Ticket{Operation: OpAdd, Class: class, UID: "u", Name: "n", Attributes: connector.Attributes{"a": {"1"}}})
	if err != nil || ref != "M1" {
		t.Fatalf("Create: %q %v", ref, err)
	}
	if _, err := s.Status(ctx, "M2"); !errors.Is(err, ErrNoTicket) {
		t.Fatalf("Status of an unknown ref: %v", err)
	}
	if err := s.Close("M2", Resolution{Status: StatusDone}, t0); !errors.Is(err, ErrNoTicket) {
		t.Fatalf("Close of an unknown ref: %v", err)
	}
	if err := s.Close(ref, Resolution{Status: StatusRejected, Reason: "no", Cause: connector.CategoryPermission}, t0); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Status(ctx, ref)
	got.Attributes["a"][0] = "changed" // a copy
	again, _ := s.Status(ctx, ref)
	if again.Attributes.Get("a") != "1" || again.Cause != "permission" || again.Status != StatusRejected {
		t.Fatalf("ticket %+v", again)
	}
}

func TestTicketValidate(t *testing.T) {
	t.Parallel()
	ok := Ticket{Ref: "T1", Operation: OpModify, Class: class, UID: "u", Status: StatusOpen,
		Changes: []Change{{Op: "replace", Attribute: "a"}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for what, mut := range map[string]func(*Ticket){
		"unknown operation": func(t *Ticket) { t.Operation = "rename" },
		"unknown status":    func(t *Ticket) { t.Status = "closed" },
		"no class":          func(t *Ticket) { t.Class = "" },
		"no uid or name":    func(t *Ticket) { t.UID = "" },
		"unknown op":        func(t *Ticket) { t.Changes[0].Op = "merge" },
	} {
		bad := ok.Clone()
		mut(&bad)
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("%s: %v", what, err)
		}
	}
}

// A ticket folder that went away (an unmounted share) is a communication
// failure: nothing was made, the engine tries again later.
func TestUnreachableFolderIsNotSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, err := b.conn.Delete(b.ctx, class, connector.Identifiers{UID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(b.sink.Dir()); err != nil {
		t.Fatal(err)
	}
	_, err = b.conn.Delete(b.ctx, class, connector.Identifiers{UID: "b"})
	if !errors.Is(err, connector.ErrNotSent) {
		t.Fatalf("Delete with the folder gone: %v, want not sent", err)
	}
	if _, err := b.conn.Get(b.ctx, class, connector.Identifiers{UID: "a"}); !errors.Is(err, connector.ErrNotSent) {
		t.Fatalf("Get with the folder gone: %v, want not sent", err)
	}
	if _, err := b.conn.OperationStatus(b.ctx, first.Async); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("status of a ticket whose file is gone: %v", err)
	}
	fresh, err := NewFileSink(filepath.Join(t.TempDir(), "x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(fresh.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Create(b.ctx, Ticket{}); !errors.Is(err, connector.ErrNotSent) {
		t.Fatalf("Create in a vanished folder: %v", err)
	}
	if err := os.Mkdir(fresh.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(fresh.Dir(), "T000000001.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Status(b.ctx, "T000000001"); !errors.Is(err, connector.ErrNotSent) {
		t.Fatalf("Status of an unreadable ticket: %v", err)
	}
}
