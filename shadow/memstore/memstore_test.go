package memstore_test

import (
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Capabilities{Batcher: true, Claimer: true, Leaser: true},
		func(t *testing.T, clk connector.Clock) shadow.Store {
			return memstore.New(memstore.Options{Clock: clk})
		})
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(_ testing.TB, clk connector.Clock) shadow.Store {
		return memstore.New(memstore.Options{Clock: clk})
	})
}
