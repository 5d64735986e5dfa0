package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

var _ shadow.IdentifierFinder = (*Store)(nil)

// FindByIdentifiers returns copies of the shadows of resourceID and class
// that are not dead and have one of uids or one of names, in ID order; see
// shadow.IdentifierFinder. It walks the byUID and byName chains of the
// identifiers, so it costs what it finds.
func (s *Store) FindByIdentifiers(ctx context.Context, resourceID string, class connector.ObjectClass, uids, names []string) ([]*shadow.Shadow, error) {
	if err := ctxErr(ctx, "find by identifiers"); err != nil {
		return nil, err
	}
	if resourceID == "" || class == "" {
		return nil, fmt.Errorf("memstore: find by identifiers: empty resource ID or class: %w", shadow.ErrInvalid)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var sel []*record
	take := func(r *record) {
		if !r.dead && r.resourceID == resourceID && r.class == class {
			sel = append(sel, r)
		}
	}
	for _, uid := range uids {
		if uid == "" {
			continue
		}
		for r := s.byUID[uid]; r != nil; r = r.nextUID {
			take(r)
		}
	}
	for _, name := range names {
		if name == "" {
			continue
		}
		for r := s.byName[name]; r != nil; r = r.nextName {
			take(r)
		}
	}
	if len(sel) == 0 {
		return nil, nil
	}
	// A shadow found by its UID and its Name, or by a repeated value, is
	// listed once: IDs are unique, so its repeats sort next to each other.
	slices.SortFunc(sel, byID)
	sel = slices.Compact(sel)
	out := make([]*shadow.Shadow, len(sel))
	for i, r := range sel {
		out[i] = r.shadow()
	}
	return out, nil
}
