package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/ldap"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// ldapWriters is how many goroutines write to slapd at once (the
// connector's default pool size).
const ldapWriters = 4

// BenchmarkLiveSyncLDAP: 5,000 inetOrgPerson entries are added to a fresh
// slapd (olcDbNoSync, accesslog overlay) through the LDAP connector by 4
// writers, then one live-sync run (accesslog strategy, memstore, no-op
// handler) consumes them. sync/write is the live-sync rate over the rate
// at which slapd accepted the writes, measured in the same run: ≥ 1 means
// live sync keeps up with the directory.
func BenchmarkLiveSyncLDAP(b *testing.B) {
	n := scaled(5_000)
	ctx := context.Background()
	s := testsvc.StartSlapd(b)
	conn, err := ldap.New(ldap.Config{
		URL: s.URL, BindDN: s.AdminDN, BindPassword: s.AdminPassword,
		Classes: map[connector.ObjectClass]ldap.ClassConfig{
			account: {BaseDN: s.PeopleDN, LDAPObjectClasses: []string{"inetOrgPerson"}, NamingAttribute: "uid"},
		},
		LiveSync: ldap.LiveSyncAccessLog,
		PoolSize: ldapWriters,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })

	var write, sync time.Duration
	next := 0 // the next entry number: every round writes new entries
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		task, err := livesync.New(livesync.Config{
			ResourceID: resID, Class: account, Connector: conn,
			Store: memstore.New(memstore.Options{}), Tokens: livesync.NewMemoryTokenStore(),
			Handler: func(context.Context, livesync.Event) error { return nil },
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := task.Run(ctx); err != nil { // first run: takes the current token
			b.Fatal(err)
		}
		b.StartTimer()
		first := next
		next += n
		w := timed(func() { ldapWrite(b, ctx, conn, first, n) })
		var res livesync.Result
		d := timed(func() { res, err = task.Run(ctx) })
		if err != nil || res.Processed != n {
			b.Fatalf("live sync: processed %d of %d: %v", res.Processed, n, err)
		}
		if i == 0 || w < write {
			write = w
		}
		if i == 0 || d < sync {
			sync = d
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(write)/float64(sync), "sync/write")
	b.ReportMetric(rate(n, write), "writes/s")
	b.ReportMetric(rate(n, sync), "changes/s")
}

// ldapWrite adds entries first..first+n-1 through conn with ldapWriters
// goroutines.
func ldapWrite(b *testing.B, ctx context.Context, conn *ldap.Connector, first, n int) {
	var next atomic.Int64
	next.Store(int64(first))
	var wg sync.WaitGroup
	var failed atomic.Value
	for range ldapWriters {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= first+n {
					return
				}
				if _, err := conn.Add(ctx, account, userAttrs(i)); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
}
