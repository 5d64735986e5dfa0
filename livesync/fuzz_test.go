package livesync_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// FuzzConfigValidate: New never panics on any Config; every invalid field
// is named in its error (error policy rules by index); a config without a
// problem builds a task.
func FuzzConfigValidate(f *testing.F) {
	f.Add("res", "account", uint8(0), 0, 0, 0, 0, 0, []byte{}, false, "", int64(0))
	f.Add("", "", uint8(7), -1, -1, -1, -1, -1, []byte{9, 9, 9, 9, 9, 9}, true, "", int64(-1))
	f.Add("res", "account", uint8(8), 10, 0, 4, 2, 100, []byte{3, 0, 0, 5, 0, 11, 2, 0, 7, 0, 3, 1}, true, "host-1", int64(time.Minute))
	f.Add("res", "account", uint8(0), 10, 0, 0, 0, 0, []byte{0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0}, false, "", int64(0))
	f.Add("*)(uid=*", "' OR 1=1 --", uint8(8), 1, 1, 1, 1, 1, []byte{255, 255, 255, 255, 255, 255}, true, "\x00", int64(1))
	f.Fuzz(func(t *testing.T, resource, class string, parts uint8, batch, fetch, workers, group, maxDeletes int,
		rules []byte, lease bool, owner string, ttl int64) {
		precise := parts&8 != 0
		cfg := livesync.Config{ResourceID: resource, Class: connector.ObjectClass(class), BatchSize: batch, FetchSize: fetch,
			Workers: workers, GroupCommit: group, DeleteGuard: livesync.DeleteGuard{MaxDeletes: maxDeletes}}
		if parts&1 == 0 {
			cfg.Connector = memconn.New(memconn.Options{PreciseTokens: precise})
		}
		if parts&2 == 0 {
			cfg.Store = memstore.New(memstore.Options{})
		}
		if parts&4 == 0 {
			cfg.Tokens = livesync.NewMemoryTokenStore()
		}
		bad := map[string]bool{
			"ResourceID is empty":     resource == "",
			"Class is empty":          class == "",
			"Connector is nil":        cfg.Connector == nil,
			"Store is nil":            cfg.Store == nil,
			"Tokens is nil":           cfg.Tokens == nil,
			"BatchSize is negative":   batch < 0,
			"needs precise tokens":    batch > 0 && cfg.Connector != nil && !precise,
			"FetchSize is negative":   fetch < 0,
			"Workers is negative":     workers < 0,
			"GroupCommit is negative": group < 0,
			"DeleteGuard.MaxDeletes":  maxDeletes < 0,
		}
		for i := 0; i+6 <= len(rules) && i < 6*8; i += 6 {
			b := rules[i : i+6]
			r := livesync.ErrorRule{Action: livesync.Action(b[0] % 5), StopAfter: int(int8(b[1])), MaxAttempts: int(int8(b[2]))}
			if b[3] != 0 {
				r.Categories = []connector.Category{connector.Category(b[3] % 12)}
			}
			if b[4] != 0 {
				r.ChangeTypes = []connector.ChangeType{connector.ChangeType(b[4] % 6)}
			}
			field := fmt.Sprintf("ErrorPolicy.Rules[%d].", len(cfg.ErrorPolicy.Rules))
			bad[field+"Action"] = r.Action > livesync.ActionStopAfter
			bad[field+"StopAfter"] = r.Action == livesync.ActionStopAfter && r.StopAfter < 1 || r.Action != livesync.ActionStopAfter && r.StopAfter != 0
			bad[field+"MaxAttempts"] = r.MaxAttempts < 0 || r.Action != livesync.ActionSetAside && r.MaxAttempts != 0
			bad[field+"Categories"] = len(r.Categories) > 0 && r.Categories[0] > connector.CategoryPermission
			bad[field+"ChangeTypes"] = len(r.ChangeTypes) > 0 && (r.ChangeTypes[0] < connector.ChangeCreate || r.ChangeTypes[0] > connector.ChangeCreateOrModify)
			cfg.ErrorPolicy.Rules = append(cfg.ErrorPolicy.Rules, r)
		}
		if lease {
			cfg.Lease = &livesync.LeaseConfig{Owner: owner, TTL: time.Duration(ttl)}
			_, fenced := cfg.Tokens.(livesync.FencedTokenStore)
			bad["Lease.Owner"] = owner == ""
			bad["Lease.TTL"] = ttl < 0
			bad["FencedTokenStore"] = cfg.Tokens != nil && !fenced
		}
		task, err := livesync.New(cfg)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		anyBad := false
		for field, isBad := range bad {
			anyBad = anyBad || isBad
			if isBad && !strings.Contains(msg, field) {
				t.Fatalf("%s is wrong, but New's error %q does not say so", field, msg)
			}
		}
		switch {
		case anyBad && err == nil:
			t.Fatal("New accepted an invalid config")
		case !anyBad && err != nil:
			t.Fatalf("New refused a valid config: %v", err)
		case err == nil && task == nil:
			t.Fatal("New returned neither a task nor an error")
		}
		for _, line := range strings.Split(msg, "\n") {
			if line != "" && !strings.HasPrefix(line, "livesync: ") {
				t.Fatalf("error line %q does not say where it comes from", line)
			}
		}
	})
}
