package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// ErrCorrupt is returned when a stored row cannot be read back: JSON that
// does not parse, a value out of range. The error names the row (shadow ID,
// token key); nothing is written by the call that met it.
var ErrCorrupt = errors.New("sqlstore: corrupt row")

// The JSON forms of pending operations and changes. They are the stored
// format: field names are part of the schema and MUST NOT change.
type (
	wireOp struct {
		ID            int64      `json:"id"`
		Delta         wireDelta  `json:"delta"`
		Type          uint8      `json:"type"`
		Status        uint8      `json:"status"`
		Result        uint8      `json:"result"`
		Attempt       int        `json:"attempt"`
		AsyncRef      wireString `json:"async_ref,omitempty"`
		RequestedAt   *int64     `json:"requested_at,omitempty"`
		LastAttemptAt *int64     `json:"last_attempt_at,omitempty"`
		NextAttemptAt *int64     `json:"next_attempt_at,omitempty"`
		CompletedAt   *int64     `json:"completed_at,omitempty"`
		LastError     wireString `json:"last_error,omitempty"`
		ErrorCategory uint8      `json:"error_category,omitempty"`
		CancelReason  wireString `json:"cancel_reason,omitempty"`
	}
	wireDelta struct {
		Type       uint8        `json:"type"`
		Attributes wireAttrs    `json:"attributes,omitempty"`
		Changes    []wireChange `json:"changes,omitempty"`
	}
	wireChange struct {
		Op     uint8      `json:"op"`
		Name   wireString `json:"name"`
		Values wireValues `json:"values,omitempty"`
	}
	wireSetAside struct {
		Type    uint8      `json:"type"`
		Class   wireString `json:"class"`
		UID     wireString `json:"uid,omitempty"`
		Name    wireString `json:"name,omitempty"`
		OldName wireString `json:"old_name,omitempty"`
		Object  wireAttrs  `json:"object,omitempty"`
		Token   wireString `json:"token,omitempty"`
	}
)

// micros is t as microseconds since the epoch, or nil for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func microsPtr(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMicro()
	return &v
}

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func fromMicrosPtr(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return time.UnixMicro(*v).UTC()
}

// truncate drops what the store does not keep: digits below a microsecond.
func truncate(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

func encodePending(ops []shadow.PendingOperation) (any, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	w := make([]wireOp, len(ops))
	for i := range ops {
		op := &ops[i]
		ch := make([]wireChange, len(op.Delta.Changes))
		for j, c := range op.Delta.Changes {
			ch[j] = wireChange{Op: uint8(c.Op), Name: wireString(c.Name), Values: wireValues(c.Values)}
		}
		w[i] = wireOp{
			ID:            op.ID,
			Delta:         wireDelta{Type: uint8(op.Delta.Type), Attributes: wireAttrs(op.Delta.Attributes), Changes: ch},
			Type:          uint8(op.Type),
			Status:        uint8(op.Status),
			Result:        uint8(op.Result),
			Attempt:       op.Attempt,
			AsyncRef:      wireString(op.AsyncRef),
			RequestedAt:   microsPtr(op.RequestedAt),
			LastAttemptAt: microsPtr(op.LastAttemptAt),
			NextAttemptAt: microsPtr(op.NextAttemptAt),
			CompletedAt:   microsPtr(op.CompletedAt),
			LastError:     wireString(op.LastError),
			ErrorCategory: uint8(op.LastErrorCategory),
			CancelReason:  wireString(op.CancelReason),
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func decodePending(s sql.NullString) ([]shadow.PendingOperation, error) {
	if !s.Valid {
		return nil, nil
	}
	var w []wireOp
	if err := json.Unmarshal([]byte(s.String), &w); err != nil {
		return nil, err
	}
	if len(w) == 0 {
		return nil, nil
	}
	ops := make([]shadow.PendingOperation, len(w))
	for i, o := range w {
		var ch []connector.AttributeDelta
		if len(o.Delta.Changes) > 0 {
			ch = make([]connector.AttributeDelta, len(o.Delta.Changes))
			for j, c := range o.Delta.Changes {
				ch[j] = connector.AttributeDelta{Op: connector.ModOp(c.Op), Name: string(c.Name), Values: []string(c.Values)}
			}
		}
		ops[i] = shadow.PendingOperation{
			ID:                o.ID,
			Delta:             connector.Delta{Type: connector.DeltaType(o.Delta.Type), Attributes: connector.Attributes(o.Delta.Attributes), Changes: ch},
			Type:              shadow.OpType(o.Type),
			Status:            shadow.ExecStatus(o.Status),
			Result:            shadow.OpResult(o.Result),
			Attempt:           o.Attempt,
			AsyncRef:          string(o.AsyncRef),
			RequestedAt:       fromMicrosPtr(o.RequestedAt),
			LastAttemptAt:     fromMicrosPtr(o.LastAttemptAt),
			NextAttemptAt:     fromMicrosPtr(o.NextAttemptAt),
			CompletedAt:       fromMicrosPtr(o.CompletedAt),
			LastError:         string(o.LastError),
			LastErrorCategory: connector.Category(o.ErrorCategory),
			CancelReason:      string(o.CancelReason),
		}
	}
	return ops, nil
}

func encodeAttributes(a connector.Attributes) (any, error) {
	if len(a) == 0 {
		return nil, nil
	}
	return string(appendAttrsJSON(make([]byte, 0, 256), a)), nil
}

func decodeAttributes(s sql.NullString) (connector.Attributes, error) {
	if !s.Valid {
		return nil, nil
	}
	if a, ok := parseAttrsJSON(s.String); ok {
		return a, nil
	}
	var a wireAttrs
	if err := json.Unmarshal([]byte(s.String), &a); err != nil {
		return nil, err
	}
	return connector.Attributes(a), nil
}

func encodeChange(c connector.Change) (string, error) {
	b, err := json.Marshal(wireSetAside{
		Type: uint8(c.Type), Class: wireString(c.Class), UID: wireString(c.ID.UID), Name: wireString(c.ID.Name),
		OldName: wireString(c.OldName), Object: wireAttrs(c.Object), Token: wireString(c.Token),
	})
	return string(b), err
}

func decodeChange(s string) (connector.Change, error) {
	var w wireSetAside
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return connector.Change{}, err
	}
	return connector.Change{
		Type: connector.ChangeType(w.Type), Class: connector.ObjectClass(w.Class),
		ID: connector.Identifiers{UID: string(w.UID), Name: string(w.Name)}, OldName: string(w.OldName),
		Object: connector.Attributes(w.Object), Token: connector.Token(w.Token),
	}, nil
}

// derived are the indexable columns computed from a shadow on every write.
type derived struct {
	hasUnfinished                       bool
	oldestAny, oldestRetry, oldestGroup any
	oldestAsync                         any
}

func derive(s *shadow.Shadow) derived {
	oldest := func(t shadow.OpType) any {
		if at, ok := s.OldestUnfinished(t); ok {
			return at.UnixMicro()
		}
		return nil
	}
	return derived{
		hasUnfinished: s.Unfinished(),
		oldestAny:     oldest(0),
		oldestRetry:   oldest(shadow.OpRetry),
		oldestGroup:   oldest(shadow.OpGrouped),
		oldestAsync:   oldest(shadow.OpAsync),
	}
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// shadowCols are the columns scanShadow reads, in its order.
const shadowCols = `id, resource_id, class, kind, intent, uid, name, attributes, obj_exists, dead, dead_since,
	origin, version, pending, next_due, needs_recon, reconciled_at, created_at, updated_at`

// scanShadow reads one row of shadowCols. A row that does not decode fails
// with ErrCorrupt naming the shadow.
func scanShadow(r rowScanner) (*shadow.Shadow, error) {
	var (
		sh                               shadow.Shadow
		class                            string
		attrs, pending                   sql.NullString
		deadSince, nextDue, reconciledAt sql.NullInt64
		origin                           int64
		createdAt, updatedAt             int64
	)
	if err := r.Scan(&sh.ID, &sh.ResourceID, &class, &sh.Kind, &sh.Intent, &sh.UID, &sh.Name, &attrs,
		&sh.Exists, &sh.Dead, &deadSince, &origin, &sh.Version, &pending, &nextDue, &sh.NeedsReconciliation,
		&reconciledAt, &createdAt, &updatedAt); err != nil {
		return nil, err
	}
	sh.Class = connector.ObjectClass(class)
	var err error
	if sh.Attributes, err = decodeAttributes(attrs); err != nil {
		return nil, fmt.Errorf("%w: shadow %q: attributes: %w", ErrCorrupt, sh.ID, err)
	}
	if sh.Pending, err = decodePending(pending); err != nil {
		return nil, fmt.Errorf("%w: shadow %q: pending operations: %w", ErrCorrupt, sh.ID, err)
	}
	if origin < 0 || origin > 255 {
		return nil, fmt.Errorf("%w: shadow %q: origin %d out of range", ErrCorrupt, sh.ID, origin)
	}
	sh.Origin = shadow.Origin(origin)
	sh.DeadSince, sh.NextDue, sh.ReconciledAt = fromMicros(deadSince), fromMicros(nextDue), fromMicros(reconciledAt)
	sh.CreatedAt, sh.UpdatedAt = time.UnixMicro(createdAt).UTC(), time.UnixMicro(updatedAt).UTC()
	return &sh, nil
}
