package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/shadow"
)

// updateGroupTx is updateTx for a write of a group. On SQLite it first
// tries updateSame, which writes the same row when the shadow's indexed
// columns keep their values (a modify of attributes, the common write of
// live sync) without touching the table's indexes; SQLite would otherwise
// rewrite an entry in each of them. A miss (an indexed column changes, or
// the version or the row is not there) runs update, which also explains a
// conflict.
func (s *Store) updateGroupTx(ctx context.Context, tx querier, sh *shadow.Shadow) error {
	all, now, err := s.updateArgs(sh)
	if err != nil {
		return err
	}
	if s.q.updateSame != "" {
		var version, created int64
		err := s.writer(tx).QueryRowContext(ctx, s.q.updateSame, all...).Scan(&version, &created)
		switch {
		case err == nil:
			sh.Version, sh.CreatedAt, sh.UpdatedAt = version, fromMicros(sql.NullInt64{Int64: created, Valid: true}), now
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("shadow %q: %w", sh.ID, err)
		}
	}
	return s.updateWith(ctx, tx, sh, all, now)
}
