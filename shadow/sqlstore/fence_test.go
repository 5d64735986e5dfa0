package sqlstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

var key = livesync.TokenKey{ResourceID: "r1", Class: "account", Task: "sync"}

func loadToken(t *testing.T, s *Store) connector.Token {
	t.Helper()
	tok, _, err := s.LoadToken(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestFencedTokenWrites(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			clk := connector.NewFakeClock(t0)
			s := d.open(t, clk)
			ctx := context.Background()
			a, err := s.AcquireLease(ctx, "stream", "A", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CompareAndSwapTokenFenced(ctx, key, "", "t1", a); err != nil {
				t.Fatalf("holder's fenced write: %v", err)
			}
			// Expired, not yet taken: the holder may not write.
			clk.Advance(time.Minute)
			if err := s.CompareAndSwapTokenFenced(ctx, key, "t1", "t2", a); !errors.Is(err, shadow.ErrLeaseLost) {
				t.Fatalf("fenced write on an expired lease: %v, want ErrLeaseLost", err)
			}
			b, err := s.AcquireLease(ctx, "stream", "B", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if b.Term != a.Term+1 {
				t.Fatalf("take-over term %d, want %d", b.Term, a.Term+1)
			}
			// The old holder renews in vain and cannot move the token.
			if _, err := s.RenewLease(ctx, a, time.Minute); !errors.Is(err, shadow.ErrLeaseLost) {
				t.Fatalf("renew after take-over: %v", err)
			}
			if err := s.CompareAndSwapTokenFenced(ctx, key, "t1", "t2", a); !errors.Is(err, shadow.ErrLeaseLost) {
				t.Fatalf("fenced write after take-over: %v, want ErrLeaseLost", err)
			}
			if got := loadToken(t, s); got != "t1" {
				t.Fatalf("token %q after fenced-out writes, want t1", got)
			}
			// The new holder moves it; a wrong old token is a conflict even
			// with the lease.
			if err := s.CompareAndSwapTokenFenced(ctx, key, "t0", "t2", b); !errors.Is(err, livesync.ErrTokenConflict) {
				t.Fatalf("fenced write with a stale token: %v", err)
			}
			if err := s.CompareAndSwapTokenFenced(ctx, key, "t1", "t2", b); err != nil {
				t.Fatal(err)
			}
			if err := s.CompareAndSwapTokenFenced(ctx, livesync.TokenKey{}, "t1", "t2", b); !errors.Is(err, shadow.ErrInvalid) {
				t.Fatalf("fenced write with an empty key: %v", err)
			}
		})
	}
}

func TestCommitGroup(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			clk := connector.NewFakeClock(t0)
			s := d.open(t, clk)
			ctx := context.Background()
			existing := newShadow("existing")
			if err := s.Create(ctx, existing); err != nil {
				t.Fatal(err)
			}
			lease, err := s.AcquireLease(ctx, "stream", "A", time.Minute)
			if err != nil {
				t.Fatal(err)
			}

			// Success: two creates, an update and the token, at once.
			n1, n2 := newShadow(""), newShadow("")
			n2.UID = "other"
			upd := existing.Clone()
			upd.Attributes["n"] = []string{"1"}
			writes := []shadow.Write{{Op: shadow.WriteCreate, Shadow: n1}, {Op: shadow.WriteCreate, Shadow: n2}, {Op: shadow.WriteUpdate, Shadow: upd}}
			if err := s.CommitGroup(ctx, writes, key, "", "t1", &lease); err != nil {
				t.Fatal(err)
			}
			if n1.ID == "" || n1.Version != 1 || upd.Version != 2 || loadToken(t, s) != "t1" {
				t.Fatalf("after commit: n1=%q v%d, upd v%d, token %q", n1.ID, n1.Version, upd.Version, loadToken(t, s))
			}

			count := func() int {
				n, err := s.Count(ctx, shadow.Query{})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			before := count()
			failures := []struct {
				name   string
				old    connector.Token
				lease  *shadow.Lease
				writes func() []shadow.Write
				want   error
			}{
				{"token moved", "t0", nil, nil, livesync.ErrTokenConflict},
				{"lease of another term", "t1", &shadow.Lease{Name: "stream", Owner: "A", Term: 9}, nil, shadow.ErrLeaseLost},
				{"stale update", "t1", &lease, func() []shadow.Write {
					stale := existing.Clone() // version 1; stored is 2
					return []shadow.Write{{Op: shadow.WriteCreate, Shadow: newShadow("")}, {Op: shadow.WriteUpdate, Shadow: stale}}
				}, shadow.ErrConflict},
				{"duplicate live identity", "t1", nil, func() []shadow.Write {
					dup := newShadow("")
					dup.UID = existing.UID
					return []shadow.Write{{Op: shadow.WriteCreate, Shadow: dup}}
				}, shadow.ErrDuplicate},
				{"invalid shadow", "t1", nil, func() []shadow.Write {
					return []shadow.Write{{Op: shadow.WriteCreate, Shadow: &shadow.Shadow{}}}
				}, shadow.ErrInvalid},
			}
			for _, f := range failures {
				var ws []shadow.Write
				if f.writes != nil {
					ws = f.writes()
				} else {
					ws = []shadow.Write{{Op: shadow.WriteCreate, Shadow: newShadow("")}}
				}
				err := s.CommitGroup(ctx, ws, key, f.old, "t9", f.lease)
				if !errors.Is(err, f.want) {
					t.Errorf("%s: %v, want %v", f.name, err, f.want)
				}
				if ws[0].Shadow.ID != "" {
					t.Errorf("%s: the caller's new shadow kept ID %q after the failure", f.name, ws[0].Shadow.ID)
				}
				if got := loadToken(t, s); got != "t1" {
					t.Errorf("%s: token moved to %q", f.name, got)
				}
				if got := count(); got != before {
					t.Errorf("%s: %d shadows after the failure, want %d", f.name, got, before)
				}
			}
			err = s.CommitGroup(ctx, nil, livesync.TokenKey{ResourceID: "r"}, "", "x", nil)
			if !errors.Is(err, shadow.ErrInvalid) || !strings.Contains(err.Error(), "Class") {
				t.Errorf("commit group with a bad key: %v", err)
			}
		})
	}
}

func TestApplyNamesFailingWrite(t *testing.T) {
	t.Parallel()
	s := newSQLite(t, nil)
	ctx := context.Background()
	a := newShadow("")
	err := s.Apply(ctx, []shadow.Write{
		{Op: shadow.WriteCreate, Shadow: a},
		{Op: shadow.WriteDelete, Shadow: &shadow.Shadow{ID: "missing", Version: 1}},
	})
	if !errors.Is(err, shadow.ErrNotFound) || !strings.Contains(err.Error(), "write 1 of 2") {
		t.Fatalf("apply: %v", err)
	}
	if a.ID != "" || a.Version != 0 {
		t.Fatalf("caller's shadow changed by a failed batch: %q v%d", a.ID, a.Version)
	}
	for _, bad := range [][]shadow.Write{{{Op: shadow.WriteCreate}}, {{Op: 9, Shadow: newShadow("x")}}} {
		if err := s.Apply(ctx, bad); !errors.Is(err, shadow.ErrInvalid) {
			t.Errorf("apply %v: %v, want ErrInvalid", bad, err)
		}
	}
}
