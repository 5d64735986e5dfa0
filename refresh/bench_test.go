package refresh

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// BenchmarkDueRun measures a default (Due) run over a store of 20,000
// shadows of which 200 are due: the run costs in proportion to the due
// ones. The resource is in maintenance, so the due shadows stay due and
// every iteration does the same work.
func BenchmarkDueRun(b *testing.B) {
	bd := setup(b, settings(), "r1")
	ctx := context.Background()
	for i := 0; i < 20000; i++ {
		sh := &shadow.Shadow{ID: fmt.Sprintf("s%06d", i), ResourceID: "r1", Class: class, UID: fmt.Sprint(i),
			Name: fmt.Sprint(i), Exists: true, Origin: shadow.OriginAssigned,
			Attributes: connector.Attributes{"uid": {fmt.Sprint(i)}}}
		if i%100 == 0 {
			sh.Pending = []shadow.PendingOperation{retryOp(t0)}
			sh.NextDue = t0
		}
		if err := bd.store.Create(ctx, sh); err != nil {
			b.Fatal(err)
		}
	}
	if err := bd.engine.SetMaintenance("r1", true); err != nil {
		b.Fatal(err)
	}
	tk, err := New(Config{Engine: bd.engine})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	examined := 0
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := tk.Run(ctx)
		if err != nil {
			b.Fatal(err)
		}
		examined += res.Total.Examined
	}
	b.ReportMetric(float64(examined)/float64(b.N), "examined/run")
	b.ReportMetric(float64(examined)/time.Since(start).Seconds(), "shadows/s")
}
