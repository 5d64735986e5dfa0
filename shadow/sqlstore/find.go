package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

var _ shadow.IdentifierFinder = (*Store)(nil)

// findChunk is the most values of each identifier list one statement of
// FindByIdentifiers takes; longer lists take several statements.
const findChunk = 256

// FindByIdentifiers returns the shadows of resourceID and class that are not
// dead and have one of uids or one of names, in ID order; see
// shadow.IdentifierFinder. Up to findChunk UIDs and as many names take one
// statement, which reads the uid and name indexes.
func (s *Store) FindByIdentifiers(ctx context.Context, resourceID string, class connector.ObjectClass, uids, names []string) ([]*shadow.Shadow, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: find by identifiers: %w", err)
	}
	if resourceID == "" || class == "" {
		return nil, fmt.Errorf("sqlstore: find by identifiers: empty resource ID or class: %w", shadow.ErrInvalid)
	}
	uids, names = s.findable(uids), s.findable(names)
	var out []*shadow.Shadow
	for i := 0; i < len(uids) || i < len(names); i += findChunk {
		stmt, args := s.findSQL(resourceID, class, chunk(uids, i), chunk(names, i))
		var err error
		if out, err = s.queryShadows(ctx, out, stmt, args); err != nil {
			return nil, fmt.Errorf("sqlstore: find by identifiers: %w", err)
		}
	}
	if len(uids) > findChunk || len(names) > findChunk {
		// Each statement's rows are in ID order, and a shadow may be in
		// the rows of two statements.
		slices.SortStableFunc(out, func(a, b *shadow.Shadow) int { return strings.Compare(a.ID, b.ID) })
	}
	// A shadow found twice is listed once; its rows are next to each other.
	return slices.CompactFunc(out, func(a, b *shadow.Shadow) bool { return a.ID == b.ID }), nil
}

// findable returns the values of list that a shadow may hold, sorted and
// without repeats: not empty, and text on a database that keeps only text
// (another value would make PostgreSQL refuse the whole statement). list
// is not modified.
func (s *Store) findable(list []string) []string {
	out := make([]string, 0, len(list))
	for _, v := range list {
		if v != "" && (!s.d.textOnly || plainText(v)) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// chunk returns the i-th findChunk values of list, from index i.
func chunk(list []string, i int) []string {
	if i >= len(list) {
		return nil
	}
	return list[i:min(i+findChunk, len(list))]
}

// findSQL is the statement that selects the shadows of resourceID and class
// that are not dead and have one of uids or one of names (not both empty),
// in ID order; a shadow found by both appears twice on PostgreSQL. Both
// forms read the uid and name indexes, one lookup per value, even on tables
// nobody has run ANALYZE on.
//
// SQLite: uid IN (...) OR name IN (...), which its planner serves with the
// two indexes. The resource and class are written as expressions so that it
// does not walk the resource's shadows in ID order instead (see whereSQL).
// Each list is padded to a power of two by repeating its last value, which
// changes nothing it selects, so that lists of any length make a handful of
// statement texts, each prepared once.
//
// PostgreSQL: without statistics its planner takes every value of an IN
// list to select 0.5% of the table, and reads the whole table for a list of
// a hundred; so the values come as two arrays, and a lateral subquery that
// cannot be flattened (OFFSET 0) looks each pair up through the indexes.
func (s *Store) findSQL(resourceID string, class connector.ObjectClass, uids, names []string) (string, []any) {
	if s.d == postgresDialect {
		return s.sql(`SELECT s.* FROM unnest($3::text[], $4::text[]) AS k(u, n) CROSS JOIN LATERAL (
			SELECT ` + shadowCols + ` FROM {t}shadows
			WHERE (uid = k.u OR name = k.n) AND resource_id || '' = $1 AND class || '' = $2 AND NOT dead
			OFFSET 0) AS s ORDER BY s.id`), []any{resourceID, string(class), uids, names}
	}
	args := make([]any, 0, 2+padded(len(uids))+padded(len(names)))
	args = append(args, resourceID, string(class))
	var b strings.Builder
	b.WriteString(`SELECT ` + shadowCols + ` FROM {t}shadows WHERE resource_id || '' = $1 AND class || '' = $2 AND NOT dead AND (`)
	in := func(col string, list []string) {
		b.WriteString(col + ` IN (`)
		for i := range padded(len(list)) {
			if i > 0 {
				b.WriteString(", ")
			}
			args = append(args, list[min(i, len(list)-1)])
			// Anonymous: SQLite looks each numbered parameter up in
			// the list of them, which for hundreds cost more than
			// the lookups; "?" takes the number after the last.
			b.WriteString("?")
		}
		b.WriteString(")")
	}
	if len(uids) > 0 {
		in("uid", uids)
	}
	if len(names) > 0 {
		if len(uids) > 0 {
			b.WriteString(" OR ")
		}
		in("name", names)
	}
	b.WriteString(`) ORDER BY id`)
	return s.sql(b.String()), args
}

// padded is the length a list of n values is padded to: the next power of
// two, at most findChunk (itself a power of two); 0 stays 0.
func padded(n int) int {
	p := 0
	if n > 0 {
		p = 1
	}
	for p < n {
		p *= 2
	}
	return min(p, findChunk)
}

// queryShadows runs stmt on the read pool and appends the shadows it
// returns to out.
func (s *Store) queryShadows(ctx context.Context, out []*shadow.Shadow, stmt string, args []any) ([]*shadow.Shadow, error) {
	rows, err := s.reader().QueryContext(ctx, stmt, args...)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		sh, err := scanShadow(rows)
		if err != nil {
			return out, err
		}
		out = append(out, sh)
	}
	return out, rows.Err()
}
