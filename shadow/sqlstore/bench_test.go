package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

// BenchmarkRefreshCycle measures the work loop of a refresh worker: claim a
// batch of due shadows, complete each one's operation with a
// version-checked update, release the batch. Reported: shadows/s.
func BenchmarkRefreshCycle(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			s := d.open(b, nil)
			ctx := context.Background()
			var writes []shadow.Write
			for i := range b.N {
				sh := newShadow(fmt.Sprintf("b%08d", i))
				sh.NextDue = time.Now().Add(-time.Minute)
				writes = append(writes, shadow.Write{Op: shadow.WriteCreate, Shadow: sh})
				if len(writes) == 500 || i == b.N-1 {
					if err := s.Apply(ctx, writes); err != nil {
						b.Fatal(err)
					}
					writes = writes[:0]
				}
			}
			b.ResetTimer()
			start := time.Now()
			done := 0
			for done < b.N {
				batch, err := s.Claim(ctx, shadow.Query{Unfinished: true, DueBy: time.Now()}, "bench", time.Minute, 50)
				if err != nil {
					b.Fatal(err)
				}
				if len(batch) == 0 {
					b.Fatalf("nothing to claim after %d of %d", done, b.N)
				}
				ids := make([]string, len(batch))
				for i, sh := range batch {
					sh.Pending[0].Status, sh.Pending[0].Result = shadow.StatusCompleted, shadow.ResultSuccess
					sh.NextDue = time.Time{}
					if err := s.Update(ctx, sh); err != nil {
						b.Fatal(err)
					}
					ids[i] = sh.ID
				}
				if err := s.Release(ctx, "bench", ids...); err != nil {
					b.Fatal(err)
				}
				done += len(batch)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "shadows/s")
		})
	}
}
