package ldap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// drain fetches from tok until a fetch returns no change, with batches of
// max, and returns every change and the last token.
func drain(t *testing.T, c *Connector, tok connector.Token, max int) ([]connector.Change, connector.Token) {
	t.Helper()
	var all []connector.Change
	for range 10000 {
		b, err := c.FetchChanges(context.Background(), personClass, tok, max)
		if err != nil {
			t.Fatal(err)
		}
		if max > 0 && len(b.Changes) > max {
			t.Fatalf("fetch returned %d changes, max %d", len(b.Changes), max)
		}
		for _, ch := range b.Changes {
			if err := ch.Validate(); err != nil {
				t.Fatalf("invalid change %+v: %v", ch, err)
			}
		}
		all = append(all, b.Changes...)
		if b.Token == "" {
			t.Fatal("empty batch token")
		}
		tok = b.Token
		if len(b.Changes) == 0 && !b.More {
			return all, tok
		}
	}
	t.Fatal("change stream does not end")
	return nil, ""
}

func TestAccessLogLifecycle(t *testing.T) {
	t.Parallel()
	c, s, _ := setup(t)
	ctx := context.Background()
	if !c.PreciseTokens() {
		t.Fatal("accesslog tokens must be precise")
	}
	start, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(start), "accesslog:") {
		t.Fatalf("token %q", start)
	}
	// Writes under another base are not this class's changes.
	other := newConnector(t, testConfig(s, newOU(t, s)))
	if _, err := other.Add(ctx, personClass, person("elsewhere")); err != nil {
		t.Fatal(err)
	}

	a, err := c.Add(ctx, personClass, person("dave"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Modify(ctx, personClass, a.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"d@x"}}}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Modify(ctx, personClass, a.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{"dave2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, personClass, r.ID); err != nil {
		t.Fatal(err)
	}

	changes, end := drain(t, c, start, 0)
	// The rename is one modrdn: the naming attribute is not sent again.
	wantTypes := []connector.ChangeType{connector.ChangeCreate, connector.ChangeModify, connector.ChangeModify, connector.ChangeDelete}
	if len(changes) != len(wantTypes) {
		t.Fatalf("got %d changes, want %d: %+v", len(changes), len(wantTypes), changes)
	}
	for i, ch := range changes {
		if ch.Type != wantTypes[i] || ch.ID.UID != a.ID.UID || ch.Class != personClass {
			t.Errorf("change %d = %+v, want type %v uid %s", i, ch, wantTypes[i], a.ID.UID)
		}
		if i > 0 && ch.Token <= changes[i-1].Token {
			t.Errorf("tokens not increasing: %q after %q", ch.Token, changes[i-1].Token)
		}
	}
	if changes[0].ID.Name != a.ID.Name || changes[0].Object.Get("cn") != "Person dave" || changes[0].Object["entryUUID"] != nil {
		t.Errorf("create = %+v", changes[0])
	}
	if changes[2].OldName != a.ID.Name || changes[2].ID.Name != r.ID.Name {
		t.Errorf("rename = %+v, want %s -> %s", changes[2], a.ID.Name, r.ID.Name)
	}
	if changes[3].ID.Name != r.ID.Name || changes[3].Object != nil {
		t.Errorf("delete = %+v", changes[3])
	}
	// Resuming after any change gives exactly the rest.
	for i := range changes {
		rest, _ := drain(t, c, changes[i].Token, 1)
		if len(rest) != len(changes)-i-1 {
			t.Fatalf("resuming after change %d gives %d changes, want %d", i, len(rest), len(changes)-i-1)
		}
	}
	// The end token is stable and LatestToken is not behind it.
	more, _ := drain(t, c, end, 0)
	if len(more) != 0 {
		t.Fatalf("changes after the end: %+v", more)
	}
	latest, err := c.LatestToken(ctx, personClass)
	if err != nil || latest < end {
		t.Fatalf("LatestToken %q (%v) is behind %q", latest, err, end)
	}
	// The empty token is the beginning of the stream.
	all, _ := drain(t, c, "", 0)
	if len(all) < len(changes) {
		t.Fatalf("from the beginning: %d changes, want at least %d", len(all), len(changes))
	}
}

func TestTokensValidated(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ts, _, _ := setup(t, func(cfg *Config) { cfg.LiveSync = LiveSyncModifyTimestamp })
	none, _, _ := setup(t, func(cfg *Config) { cfg.LiveSync = LiveSyncNone })
	ctx := context.Background()
	for _, tc := range []struct {
		c   *Connector
		tok connector.Token
	}{
		{c, "garbage"}, {c, "accesslog:20261122041801Z"}, {c, "accesslog:)(objectClass=*"},
		{c, "modifyTimestamp:20261122041800Z"}, {ts, "accesslog:0"}, {ts, "modifyTimestamp:2026"},
		{ts, "modifyTimestamp:20261122041800Z)(x=*"},
		// Well-formed but impossible, or upper-case hex (which would sort
		// after every CSN slapd writes).
		{c, "accesslog:20261322041801.003230Z#000000#000#000000"}, {c, "accesslog:20260230041801.003230Z#000000#000#000000"},
		{c, "accesslog:20261122251801.003230Z#000000#000#000000"}, {c, "accesslog:20261122041801.003230Z#00000A#000#000000"},
		{ts, "modifyTimestamp:20261131041800Z"}, {ts, "modifyTimestamp:20261122046000Z"},
	} {
		_, err := tc.c.FetchChanges(ctx, personClass, tc.tok, 0)
		if catOf(t, err) != connector.CategorySchema || !strings.Contains(err.Error(), string(tc.tok)) {
			t.Errorf("token %q: %v, want a schema error naming it", tc.tok, err)
		}
	}
	if _, err := none.FetchChanges(ctx, personClass, "", 0); catOf(t, err) != connector.CategoryConfiguration {
		t.Errorf("live sync off: %v", err)
	}
	if _, err := none.LatestToken(ctx, personClass); catOf(t, err) != connector.CategoryConfiguration {
		t.Errorf("live sync off: %v", err)
	}
	if _, err := c.FetchChanges(ctx, "nope", "", 0); catOf(t, err) != connector.CategorySchema {
		t.Errorf("unknown class: %v", err)
	}
}

// TestAccessLogConcurrentWriters writes from several clients at once while
// fetching, and checks that live sync sees every change exactly once:
// slapd commits log records out of reqStart order under concurrent writers
// (about 5% of them here, never out of entryCSN order), and the cursor must
// not skip them. Checked by mutation: with a reqStart cursor instead of the
// connector's, this test failed in 7 of 11 runs on a busy 2-core machine.
func TestAccessLogConcurrentWriters(t *testing.T) {
	t.Parallel()
	c, s, base := setup(t)
	ctx := context.Background()
	start, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	const rounds, writers, adds, modsPerAdd = 2, 8, 25, 3 // 8 clients × 100 writes, twice
	seen := map[connector.Token]bool{}
	perUID := map[string][2]int{} // creates, modifies
	tok := start
	fetch := func() int {
		b, err := c.FetchChanges(ctx, personClass, tok, 37)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range b.Changes {
			if seen[ch.Token] {
				t.Fatalf("change delivered twice: %+v", ch)
			}
			seen[ch.Token] = true
			n := perUID[ch.ID.UID]
			switch ch.Type {
			case connector.ChangeCreate:
				n[0]++
			case connector.ChangeModify:
				n[1]++
			default:
				t.Fatalf("unexpected change %+v", ch)
			}
			perUID[ch.ID.UID] = n
		}
		tok = b.Token
		return len(b.Changes)
	}
	fetches := 0
	for r := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wc, err := New(testConfig(s, base)) // a client of its own
				if err != nil {
					errs <- err
					return
				}
				defer wc.Close()
				for i := range adds {
					r, err := wc.Add(ctx, personClass, person(fmt.Sprintf("r%d-w%d-%d", r, w, i)))
					if err != nil {
						errs <- err
						return
					}
					for m := range modsPerAdd {
						_, err := wc.Modify(ctx, personClass, r.ID, []connector.AttributeDelta{
							{Op: connector.Replace, Name: "description", Values: []string{fmt.Sprint(m)}}})
						if err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
			}
			fetch()
			fetches++
		}
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	for fetch() > 0 {
	}
	if len(perUID) != rounds*writers*adds {
		t.Fatalf("saw %d objects, want %d", len(perUID), rounds*writers*adds)
	}
	for uid, n := range perUID {
		if n != [2]int{1, modsPerAdd} {
			t.Errorf("object %s: %d creates and %d modifies, want 1 and %d", uid, n[0], n[1], modsPerAdd)
		}
	}
	t.Logf("%d changes in %d fetches during the writes", len(seen), fetches)
}

func TestModifyTimestamp(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t, func(cfg *Config) { cfg.LiveSync = LiveSyncModifyTimestamp })
	ctx := context.Background()
	if c.PreciseTokens() {
		t.Fatal("modifyTimestamp tokens are not precise")
	}
	// Nothing yet: the first fetch from the beginning has a token anyway.
	b, err := c.FetchChanges(ctx, personClass, "", 0)
	if err != nil || len(b.Changes) != 0 || !strings.HasPrefix(string(b.Token), "modifyTimestamp:") {
		t.Fatalf("empty fetch: %+v %v", b, err)
	}
	start, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Add(ctx, personClass, person("erin"))
	if err != nil {
		t.Fatal(err)
	}
	b, err = c.FetchChanges(ctx, personClass, start, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Changes) != 1 || b.Changes[0].Type != connector.ChangeCreateOrModify || b.Changes[0].ID != a.ID ||
		b.Changes[0].Object.Get("cn") != "Person erin" || b.Changes[0].Token != "" {
		t.Fatalf("after add: %+v", b)
	}
	// The boundary second is read again, but an unchanged object is not
	// delivered again: the token carries its digest.
	again, err := c.FetchChanges(ctx, personClass, b.Token, 0)
	if err != nil || len(again.Changes) != 0 || again.Token != b.Token {
		t.Fatalf("unchanged boundary object delivered again: %+v %v", again, err)
	}
	// A modify, in the same second or a later one, is delivered.
	if _, err := c.Modify(ctx, personClass, a.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"e@x"}}}); err != nil {
		t.Fatal(err)
	}
	b2, err := c.FetchChanges(ctx, personClass, b.Token, 0)
	if err != nil || len(b2.Changes) != 1 || b2.Changes[0].Object.Get("mail") != "e@x" {
		t.Fatalf("after modify: %+v %v", b2, err)
	}
	// The token's time is a whole second: without digests (a token from
	// before), the whole boundary second is delivered again.
	bare := connector.Token(strings.SplitN(string(b2.Token), ";", 2)[0])
	b4, err := c.FetchChanges(ctx, personClass, bare, 0)
	if err != nil || len(b4.Changes) != 1 || b4.Changes[0].ID != a.ID {
		t.Fatalf("boundary second without digests not re-delivered: %+v %v", b4, err)
	}
	// LatestToken is at the end: nothing unchanged after it.
	latest, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	if b5, err := c.FetchChanges(ctx, personClass, latest, 0); err != nil || len(b5.Changes) != 0 {
		t.Fatalf("changes after LatestToken: %+v %v", b5, err)
	}
	// Deletes are invisible.
	if _, err := c.Delete(ctx, personClass, a.ID); err != nil {
		t.Fatal(err)
	}
	b3, err := c.FetchChanges(ctx, personClass, b2.Token, 0)
	if err != nil || len(b3.Changes) != 0 || b3.Token != b2.Token {
		t.Fatalf("after delete: %+v %v", b3, err)
	}
}

func TestTimestampTokens(t *testing.T) {
	t.Parallel()
	id := connector.Identifiers{UID: "u1", Name: "uid=a,o=x"}
	d1 := digest(id, "20261122041800Z", connector.Attributes{"cn": {"a", "b"}})
	d2 := digest(id, "20261122041800Z", connector.Attributes{"cn": {"b", "a", "a"}})
	d3 := digest(id, "20261122041800Z", connector.Attributes{"cn": {"a"}})
	d4 := digest(connector.Identifiers{UID: "u2", Name: id.Name}, "20261122041800Z", connector.Attributes{"cn": {"a", "b"}})
	if d1 != d2 || d1 == d3 || d1 == d4 {
		t.Fatal("digest must depend on the identifiers and the value sets only")
	}
	tok := tsToken{second: "20261122041800Z", digests: map[[8]byte]bool{d1: true, d3: true}}
	back, ok := parseTSToken(strings.TrimPrefix(tok.String(), modifyTimestampPrefix))
	if !ok || back.second != tok.second || len(back.digests) != 2 || !back.digests[d1] || !back.digests[d3] {
		t.Fatalf("round trip of %q: %+v %v", tok, back, ok)
	}
	many := tsToken{second: "20261122041800Z", digests: map[[8]byte]bool{}}
	for i := range maxBoundaryDigests + 1 {
		many.digests[[8]byte{byte(i)}] = true
	}
	if many.String() != "modifyTimestamp:20261122041800Z" {
		t.Fatalf("a token with too many digests must drop them: %q", many)
	}
	if (tsToken{}).String() != "" {
		t.Fatal("empty token")
	}
	for _, bad := range []string{"20261122041800Z;", "20261122041800Z;!!", "20261122041800Z;AAAA", "2026112204180Z", "20261122041800Z;" + strings.Repeat("A", 8*88)} {
		if _, ok := parseTSToken(bad); ok {
			t.Errorf("parseTSToken(%q) accepted", bad)
		}
	}
}

func TestModifyTimestampMaxKeepsWholeSeconds(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t, func(cfg *Config) { cfg.LiveSync = LiveSyncModifyTimestamp })
	ctx := context.Background()
	start, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := c.Add(ctx, personClass, person(fmt.Sprint("f", i))); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	tok := start
	for range 20 {
		b, err := c.FetchChanges(ctx, personClass, tok, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range b.Changes {
			seen[ch.ID.UID] = true
		}
		tok = b.Token
		if !b.More {
			break
		}
	}
	if len(seen) != 5 {
		t.Fatalf("saw %d of 5 objects", len(seen))
	}
	if _, err := c.FetchChanges(ctx, personClass, tok, 2); err != nil {
		t.Fatal(err)
	}
}

// TestAccessLogOldToken resumes from a position long before the next
// record: the fetch widens its time slice until it finds the changes.
func TestAccessLogOldToken(t *testing.T) {
	t.Parallel()
	c, _, _ := setup(t)
	ctx := context.Background()
	latest, err := c.LatestToken(ctx, personClass)
	if err != nil {
		t.Fatal(err)
	}
	at, ok := csnTime(strings.TrimPrefix(string(latest), "accesslog:"))
	if !ok {
		t.Fatalf("token %q has no time", latest)
	}
	old := connector.Token("accesslog:" + at.Add(-36*time.Hour).Format("20060102150405.000000") + "Z#000000#000#000000")
	var uids []string
	for i := range 7 {
		r, err := c.Add(ctx, personClass, person(fmt.Sprint("old", i)))
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, r.ID.UID)
	}
	chs, _ := drain(t, c, old, 3)
	var mine []string
	for _, ch := range chs {
		if slices.Contains(uids, ch.ID.UID) {
			mine = append(mine, ch.ID.UID)
		}
	}
	if !slices.Equal(mine, uids) {
		t.Fatalf("from a token 36 h old: %d of my 7 creates, in order %v", len(mine), mine)
	}
	if got := csnCeil(at); got <= string(latest)[len("accesslog:"):] {
		t.Fatalf("csnCeil(%v) = %q is not above %q", at, got, latest)
	}
}
