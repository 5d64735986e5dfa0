package sqlstore

import (
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/livesync/tokenstoretest"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, storetest.Capabilities{Batcher: true, Claimer: true, Leaser: true},
				func(t *testing.T, clk connector.Clock) shadow.Store { return d.open(t, clk) })
		})
	}
}

func TestTokenStoreConformance(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			tokenstoretest.Run(t, func(t *testing.T) livesync.TokenStore { return d.open(t, nil) })
		})
	}
}
