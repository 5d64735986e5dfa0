package sqlstore

import (
	"context"
	"strconv"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

// BenchmarkCommitGroup measures the store's group write as live sync uses
// it: CommitGroup of 100 shadow writes and the token, first creating b.N
// shadows, then updating each once. Reported: rows/s of each half. The
// "single" cases write one statement per shadow (the multi-row statements
// off), for comparison in one run.
func BenchmarkCommitGroup(b *testing.B) {
	const group = 100
	for _, d := range dialects {
		for _, single := range []bool{false, true} {
			name := d.name
			if single {
				name += "/single"
			}
			b.Run(name, func(b *testing.B) {
				s := d.open(b, nil)
				if single {
					s.bulk = nil
				}
				ctx := context.Background()
				key := livesync.TokenKey{ResourceID: "r1", Class: "account", Task: "bench"}
				shadows := make([]*shadow.Shadow, b.N)
				for i := range shadows {
					n := strconv.Itoa(i)
					shadows[i] = &shadow.Shadow{ResourceID: "r1", Class: "account", UID: "uid-" + n, Name: "user" + n,
						Attributes: connector.Attributes{"uid": {"user" + n}, "cn": {"User " + n}, "sn": {"Bench"},
							"mail": {"user" + n + "@example.com"}, "description": {"benchmark account number " + n}},
						Exists: true, Origin: shadow.OriginDiscovered}
				}
				var tok connector.Token
				seq := 0
				run := func(op shadow.WriteOp) float64 {
					writes := make([]shadow.Write, 0, group)
					start := b.Elapsed()
					b.StartTimer()
					for i, sh := range shadows {
						if op == shadow.WriteUpdate {
							sh.Attributes["mail"] = []string{"new" + strconv.Itoa(i) + "@example.com"}
						}
						writes = append(writes, shadow.Write{Op: op, Shadow: sh})
						if len(writes) == group || i == len(shadows)-1 {
							seq++
							next := connector.Token(strconv.Itoa(seq))
							if err := s.CommitGroup(ctx, writes, key, tok, next, nil); err != nil {
								b.Fatal(err)
							}
							tok, writes = next, writes[:0]
						}
					}
					b.StopTimer()
					return float64(len(shadows)) / (b.Elapsed() - start).Seconds()
				}
				b.StopTimer()
				b.ResetTimer()
				b.ReportMetric(run(shadow.WriteCreate), "create-rows/s")
				b.ReportMetric(run(shadow.WriteUpdate), "update-rows/s")
			})
		}
	}
}
