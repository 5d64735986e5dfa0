package shadow

import (
	"context"

	"github.com/umbra-idm/umbra/connector"
)

// IdentifierFinder is implemented by a store that can look up the shadows of
// many objects by their identifiers in one query. Live sync uses it to
// correlate a whole group of changes with one round trip instead of one or
// two List calls per change; callers find it with a type assertion and fall
// back to List when a store does not implement it.
type IdentifierFinder interface {
	// FindByIdentifiers returns every shadow of resourceID and class that
	// is not dead and whose UID is one of uids or whose Name is one of
	// names: the union of what List would return for each identifier with
	// DeadExclude, each shadow once, ordered by ID. Empty strings in uids
	// and names match nothing, and so do values the store cannot hold;
	// repeated values are allowed. Empty lists return no shadows. The
	// shadows are copies owned by the caller. An empty resourceID or
	// class fails with ErrInvalid.
	FindByIdentifiers(ctx context.Context, resourceID string, class connector.ObjectClass, uids, names []string) ([]*Shadow, error)
}
