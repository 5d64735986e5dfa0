package bench

import (
	"context"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// liveSyncChanges is the length of the change stream of the live-sync
// benchmarks: 50,000 creates, then a modify of each object.
var liveSyncChanges = scaled(100_000)

// syncStore is what a live-sync benchmark writes into: shadows and tokens.
type syncStore interface {
	shadow.Store
	livesync.TokenStore
}

// liveSyncCase describes one store of the live-sync benchmarks.
type liveSyncCase struct {
	// open returns a fresh, empty store (closed by the benchmark's
	// cleanup).
	open func(b *testing.B) syncStore
	// group is Config.GroupCommit, and the batch size of the bare loop.
	group int
	// rounds is how many engine and bare passes each iteration makes; the
	// fastest of each side counts.
	rounds int
}

// BenchmarkLiveSyncMemory: 100k precise-token changes from memconn into
// memstore with a no-op handler; bare is a hand loop that fetches the same
// changes and applies them to a memstore (find the live shadow, create or
// update it).
func BenchmarkLiveSyncMemory(b *testing.B) {
	benchLiveSync(b, liveSyncCase{
		open: func(*testing.B) syncStore {
			return memSyncStore{memstore.New(memstore.Options{}), livesync.NewMemoryTokenStore()}
		},
		group:  1,
		rounds: 3,
	})
}

// BenchmarkLiveSyncSQLite: the same stream into an SQLite file with group
// commits of 100 changes (shadows and token in one transaction); bare
// writes the same rows in batches of 100 with the token (one
// CommitGroup each), correlating from a map instead of the database.
func BenchmarkLiveSyncSQLite(b *testing.B) {
	benchLiveSync(b, liveSyncCase{
		open: func(b *testing.B) syncStore {
			s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "umbra.db"), sqlstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
		group:  100,
		rounds: 1,
	})
}

// BenchmarkLiveSyncPostgres: as BenchmarkLiveSyncSQLite, into PostgreSQL
// (a fresh schema for each side).
func BenchmarkLiveSyncPostgres(b *testing.B) {
	benchLiveSync(b, liveSyncCase{
		open: func(b *testing.B) syncStore {
			s, err := sqlstore.OpenPostgres(context.Background(), testsvc.PostgresDSN(b), sqlstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
		group:  100,
		rounds: 1,
	})
}

type memSyncStore struct {
	*memstore.Store
	*livesync.MemoryTokenStore
}

func benchLiveSync(b *testing.B, c liveSyncCase) {
	ctx := context.Background()
	conn := changeStream(b, liveSyncChanges)
	var engine, bare, engineCPU, bareCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := range c.rounds {
			b.StopTimer()
			es, bs := c.open(b), c.open(b)
			task, err := livesync.New(livesync.Config{
				ResourceID: resID, Class: account, Connector: conn, Store: es, Tokens: es,
				Handler:            func(context.Context, livesync.Event) error { return nil },
				StartFromBeginning: true, GroupCommit: c.group,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			var ecpu, dcpu time.Duration
			e := timed(func() {
				defer cpuTimed(&ecpu)()
				res, err := task.Run(ctx)
				if err != nil || res.Processed != liveSyncChanges {
					b.Fatalf("engine: processed %d of %d: %v", res.Processed, liveSyncChanges, err)
				}
			})
			b.StopTimer()
			d := timed(func() {
				defer cpuTimed(&dcpu)()
				bareLiveSync(b, ctx, conn, bs, c.group)
			})
			if n, err := bs.Count(ctx, shadow.Query{}); err != nil || n != liveSyncChanges/2 {
				b.Fatalf("bare: %d shadows, want %d: %v", n, liveSyncChanges/2, err)
			}
			if r == 0 || e < engine {
				engine, engineCPU = e, ecpu
			}
			if r == 0 || d < bare {
				bare, bareCPU = d, dcpu
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(rate(liveSyncChanges, engine), "changes/s")
	b.ReportMetric(float64(engine)/float64(bare), "engine/bare")
	b.ReportMetric(rate(liveSyncChanges, bare), "bare-changes/s")
	// CPU time of the process (all threads, the garbage collector's
	// included) per change: steadier than the rates on a busy machine.
	b.ReportMetric(float64(engineCPU.Microseconds())/float64(liveSyncChanges), "engine-cpu-µs/change")
	b.ReportMetric(float64(bareCPU.Microseconds())/float64(liveSyncChanges), "bare-cpu-µs/change")
}

// cpuTimed starts measuring the process's CPU time (user and system, all
// threads); the function it returns stores the time spent since in d.
func cpuTimed(d *time.Duration) func() {
	start := processCPU()
	return func() { *d = processCPU() - start }
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bareLiveSync applies conn's change stream to st by hand. group 1: find the
// live shadow in the store, create or update it, one write at a time. group
// > 1: correlate from a map and write each group of shadows with the token
// in one batch (CommitGroup when st has it, else Apply).
func bareLiveSync(b *testing.B, ctx context.Context, conn *memconn.Conn, st syncStore, group int) {
	if group <= 1 {
		fetchAll(b, ctx, conn, account, func(batch connector.ChangeBatch, _ connector.Token) {
			for i := range batch.Changes {
				ch := &batch.Changes[i]
				sh, err := shadow.FindLive(ctx, st, resID, account, connector.Identifiers{UID: ch.ID.UID})
				if err != nil {
					b.Fatal(err)
				}
				if sh == nil {
					err = st.Create(ctx, &shadow.Shadow{ResourceID: resID, Class: account, UID: ch.ID.UID, Name: ch.ID.Name,
						Attributes: ch.Object, Exists: true, Origin: shadow.OriginDiscovered})
				} else {
					sh.Attributes = ch.Object
					err = st.Update(ctx, sh)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		return
	}
	key := livesync.TokenKey{ResourceID: resID, Class: account, Task: "bare"}
	gc, _ := st.(livesync.GroupCommitter)
	byUID := make(map[string]*shadow.Shadow, liveSyncChanges/2)
	var stored connector.Token
	writes := make([]shadow.Write, 0, group)
	flush := func(next connector.Token) {
		if len(writes) == 0 {
			return
		}
		var err error
		if gc != nil {
			err = gc.CommitGroup(ctx, writes, key, stored, next, nil)
		} else if err = st.(shadow.Batcher).Apply(ctx, writes); err == nil {
			err = st.CompareAndSwapToken(ctx, key, stored, next)
		}
		if err != nil {
			b.Fatal(err)
		}
		stored = next
		writes = writes[:0]
	}
	fetchAll(b, ctx, conn, account, func(batch connector.ChangeBatch, _ connector.Token) {
		for i := range batch.Changes {
			ch := &batch.Changes[i]
			if sh := byUID[ch.ID.UID]; sh != nil {
				sh.Attributes = ch.Object
				writes = append(writes, shadow.Write{Op: shadow.WriteUpdate, Shadow: sh})
			} else {
				sh = &shadow.Shadow{ResourceID: resID, Class: account, UID: ch.ID.UID, Name: ch.ID.Name,
					Attributes: ch.Object, Exists: true, Origin: shadow.OriginDiscovered}
				byUID[ch.ID.UID] = sh
				writes = append(writes, shadow.Write{Op: shadow.WriteCreate, Shadow: sh})
			}
			if len(writes) == group {
				flush(ch.Token)
			}
		}
	})
	flush(connector.Token(strconv.Itoa(liveSyncChanges)))
}
