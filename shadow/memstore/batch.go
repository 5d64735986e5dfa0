package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

// Apply performs the writes in order, all or none; see shadow.Batcher.
// Later writes see earlier ones (a batch may create a shadow and update it).
// On failure nothing is written, the callers' shadows are left as they were
// (IDs, versions and timestamps included), and the error names the index of
// the failing write.
func (s *Store) Apply(ctx context.Context, writes []shadow.Write) error {
	if err := ctxErr(ctx, "apply"); err != nil {
		return err
	}
	enc := make([]encoded, len(writes))
	for i, w := range writes {
		if w.Shadow == nil {
			return fmt.Errorf("memstore: apply: write %d: nil shadow: %w", i, shadow.ErrInvalid)
		}
		switch w.Op {
		case shadow.WriteCreate, shadow.WriteUpdate:
			if err := validate(fmt.Sprintf("apply: write %d", i), w.Shadow); err != nil {
				return err
			}
			enc[i] = encode(w.Shadow)
		case shadow.WriteDelete:
		default:
			return fmt.Errorf("memstore: apply: write %d: unknown WriteOp %d: %w", i, w.Op, shadow.ErrInvalid)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	type callerFields struct {
		id                   string
		version              int64
		createdAt, updatedAt time.Time
	}
	saved := make([]callerFields, 0, len(writes))
	undo := make([]func(), 0, len(writes))
	for i, w := range writes {
		sh := w.Shadow
		saved = append(saved, callerFields{sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt})
		var err error
		switch w.Op {
		case shadow.WriteCreate:
			var r *record
			if r, err = s.createLocked(sh, &enc[i]); err == nil {
				undo = append(undo, func() { s.remove(r) })
			}
		case shadow.WriteUpdate:
			var r *record
			var old record
			if r, old, err = s.updateLocked(sh, &enc[i]); err == nil {
				undo = append(undo, func() {
					s.unindex(r)
					*r = old
					s.index(r)
				})
			}
		case shadow.WriteDelete:
			var r *record
			var c claim
			if r, c, err = s.deleteLocked(sh.ID, sh.Version); err == nil {
				undo = append(undo, func() { s.insert(r, c) })
			}
		}
		if err == nil {
			continue
		}
		for j := len(undo) - 1; j >= 0; j-- {
			undo[j]()
		}
		// In reverse, so that a shadow written twice gets its first
		// saved state back.
		for j := len(saved) - 1; j >= 0; j-- {
			f := saved[j]
			writes[j].Shadow.ID, writes[j].Shadow.Version = f.id, f.version
			writes[j].Shadow.CreatedAt, writes[j].Shadow.UpdatedAt = f.createdAt, f.updatedAt
		}
		return fmt.Errorf("memstore: apply: write %d of %d: %w", i, len(writes), err)
	}
	return nil
}
