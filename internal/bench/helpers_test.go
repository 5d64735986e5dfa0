package bench

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
)

const (
	resID   = "res"
	account = connector.ObjectClass("account")
)

// scaled returns n, or n/10 when UMBRA_BENCH_QUICK=1 asks for a quick
// pass (to try a change, not to report figures).
func scaled(n int) int {
	if os.Getenv("UMBRA_BENCH_QUICK") == "1" {
		return max(n/10, 1)
	}
	return n
}

// timed runs f after a full garbage collection, so that neither side of a
// comparison pays for the other's garbage, and returns how long f took.
func timed(f func()) time.Duration {
	runtime.GC()
	start := time.Now()
	f()
	return time.Since(start)
}

// userAttrs returns the attributes of the i-th test account: five
// attributes of realistic size.
func userAttrs(i int) connector.Attributes {
	name := userName(i)
	return connector.Attributes{
		"uid":         {name},
		"cn":          {"User " + strconv.Itoa(i)},
		"sn":          {"Bench"},
		"mail":        {name + "@example.com"},
		"description": {"benchmark account number " + strconv.Itoa(i)},
	}
}

func userName(i int) string { return "user" + strconv.Itoa(1000000 + i)[1:] }

// changeStream returns a resource with precise tokens whose change log holds
// n changes of account: n/2 creates, then one modify of each object.
func changeStream(tb testing.TB, n int) *memconn.Conn {
	tb.Helper()
	conn := memconn.New(memconn.Options{PreciseTokens: true})
	uids := make([]string, 0, n/2)
	for i := range n / 2 {
		id, err := conn.Put(account, userAttrs(i))
		if err != nil {
			tb.Fatal(err)
		}
		uids = append(uids, id.UID)
	}
	for i, uid := range uids {
		if _, err := conn.ModifyDirect(account, uid, connector.AttributeDelta{Op: connector.Replace, Name: "mail", Values: []string{userName(i) + "@new.example.com"}}); err != nil {
			tb.Fatal(err)
		}
	}
	return conn
}

// fetchAll calls fn with every batch of cl's change stream from the start.
func fetchAll(tb testing.TB, ctx context.Context, ls connector.LiveSyncer, cl connector.ObjectClass, fn func(batch connector.ChangeBatch, prev connector.Token)) {
	tb.Helper()
	var from connector.Token
	for {
		batch, err := ls.FetchChanges(ctx, cl, from, 0)
		if err != nil {
			tb.Fatal(err)
		}
		fn(batch, from)
		from = batch.Token
		if !batch.More {
			return
		}
	}
}

// rate returns n per d, per second.
func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
