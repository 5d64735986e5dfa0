package memstore

import (
	"reflect"
	"slices"
	"testing"

	"github.com/umbra-idm/umbra/shadow"
)

// TestQueryFieldsKnown fails when shadow.Query gains a field matches does
// not know: a new filter silently ignored would select too much.
func TestQueryFieldsKnown(t *testing.T) {
	t.Parallel()
	known := []string{
		"ResourceID", "Class", "UID", "Name", "Dead", "DeadBefore", "Unfinished", "PendingType",
		"OldestPendingBefore", "DueBy", "NeedsReconciliation", "ReconciledBefore", "After", "Limit",
	}
	qt := reflect.TypeFor[shadow.Query]()
	for i := range qt.NumField() {
		if name := qt.Field(i).Name; !slices.Contains(known, name) {
			t.Errorf("shadow.Query.%s is new: teach matches and scan about it, then add it here", name)
		}
	}
}
