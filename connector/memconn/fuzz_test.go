package memconn_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
)

// FuzzToken: whatever token a caller hands FetchChanges, it either fails
// with CategorySchema quoting the token, or it is a position of the stream
// and the changes after it come back in order. Every token the connector
// hands out decodes to its own position (fetching from a change's token
// resumes right after that change), and tokens grow with the stream.
func FuzzToken(f *testing.F) {
	for _, tok := range []string{"", "0", "1", "3", "007", "4", "18446744073709551615", "18446744073709551616",
		"-1", "+1", " 1", "1 ", "0x1", "1_0", "1e3", "½", "\x00", "\xff", "accesslog:0", "*)(uid=*"} {
		f.Add(uint8(3), tok, int8(2))
	}
	f.Add(uint8(0), "", int8(0))
	f.Add(uint8(17), "9", int8(-1))
	f.Fuzz(func(t *testing.T, n uint8, tok string, limit int8) {
		ctx := context.Background()
		const cl = connector.ObjectClass("account")
		c := memconn.New(memconn.Options{PreciseTokens: true, MaxFetch: 4})
		n %= 24
		for i := range int(n) {
			if _, err := c.Add(ctx, cl, connector.Attributes{"uid": {fmt.Sprint("u", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		latest, err := c.LatestToken(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if latest != connector.Token(strconv.Itoa(int(n))) {
			t.Fatalf("LatestToken after %d changes = %q", n, latest)
		}

		b, err := c.FetchChanges(ctx, cl, connector.Token(tok), int(limit))
		pos, perr := strconv.ParseUint(tok, 10, 64)
		valid := tok == "" || perr == nil && pos <= uint64(n)
		if err != nil {
			if valid {
				t.Fatalf("FetchChanges(%q) of a stream of %d: %v", tok, n, err)
			}
			if connector.Classify(err) != connector.CategorySchema || !strings.Contains(err.Error(), strconv.Quote(tok)) {
				t.Fatalf("FetchChanges(%q) = %v; want a schema error quoting the token", tok, err)
			}
			return
		}
		if !valid {
			t.Fatalf("FetchChanges(%q) of a stream of %d accepted the token", tok, n)
		}
		checkBatch(t, b, pos, uint64(n), limit)

		// Walk the whole stream from the start, resuming from every
		// change's token in turn.
		var from connector.Token
		for i := uint64(0); i < uint64(n); i++ {
			b, err := c.FetchChanges(ctx, cl, from, 1)
			if err != nil {
				t.Fatalf("FetchChanges(%q): %v", from, err)
			}
			checkBatch(t, b, i, uint64(n), 1)
			from = b.Changes[0].Token
		}
		if from != latest && n > 0 {
			t.Fatalf("the last change's token %q is not LatestToken %q", from, latest)
		}
	})
}

// checkBatch checks a batch fetched after position pos of a stream of n
// changes with the given limit.
func checkBatch(t *testing.T, b connector.ChangeBatch, pos, n uint64, limit int8) {
	t.Helper()
	want := n - pos
	if max := uint64(4); limit <= 0 && want > max {
		want = max
	} else if limit > 0 && want > uint64(limit) {
		want = uint64(limit)
	}
	if uint64(len(b.Changes)) != want {
		t.Fatalf("fetch after %d of %d (limit %d) returned %d changes, want %d", pos, n, limit, len(b.Changes), want)
	}
	prev := pos
	for i, ch := range b.Changes {
		p, err := strconv.ParseUint(string(ch.Token), 10, 64)
		if err != nil || p != prev+1 {
			t.Fatalf("change %d after position %d has token %q; want %d", i, pos, ch.Token, prev+1)
		}
		if want := fmt.Sprint("u", p-1); ch.ID.Name != want {
			t.Fatalf("change at position %d is %q, want %q", p, ch.ID.Name, want)
		}
		prev = p
	}
	if b.Token != connector.Token(strconv.FormatUint(prev, 10)) {
		t.Fatalf("batch token %q, want %d", b.Token, prev)
	}
	if b.More != (prev < n) {
		t.Fatalf("batch More = %v at %d of %d", b.More, prev, n)
	}
}
