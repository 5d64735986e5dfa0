// Package fuzzgen turns fuzzer bytes into values of the shadow model, so
// that the store fuzz targets of several packages explore the same space
// of shadows and pending operations. It is test support, not API.
package fuzzgen

import (
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// Reader hands out values taken from fuzzer bytes. Once the bytes run out
// it returns zero values, so every input decodes to something.
type Reader struct{ b []byte }

// NewReader reads from b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Byte returns the next byte, or 0 when none is left.
func (r *Reader) Byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Bool returns the low bit of the next byte.
func (r *Reader) Bool() bool { return r.Byte()&1 == 1 }

// Intn returns a number in [0, n) (n > 0).
func (r *Reader) Intn(n int) int { return int(r.Byte()) % n }

// String returns a string of up to 31 bytes taken as they are (any bytes,
// invalid UTF-8 and NUL included).
func (r *Reader) String() string {
	n := int(r.Byte() & 31)
	if n > len(r.b) {
		n = len(r.b)
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// NonEmpty is String, with "x" in place of the empty string.
func (r *Reader) NonEmpty() string {
	if s := r.String(); s != "" {
		return s
	}
	return "x"
}

// Time returns zero or a UTC time with microsecond precision between 1970
// and about 2106 (what every store keeps exactly).
func (r *Reader) Time() time.Time {
	if !r.Bool() {
		return time.Time{}
	}
	var sec uint32
	for range 4 {
		sec = sec<<8 | uint32(r.Byte())
	}
	return time.Unix(int64(sec), int64(r.Byte())*1000*3917).UTC()
}

// Attributes returns up to 3 attributes of up to 3 values each; names are
// never empty.
func (r *Reader) Attributes() connector.Attributes {
	n := r.Intn(4)
	if n == 0 {
		return nil
	}
	a := make(connector.Attributes, n)
	for range n {
		name := r.NonEmpty()
		vs := make([]string, 1+r.Intn(3))
		for i := range vs {
			vs[i] = r.String()
		}
		a[name] = vs
	}
	return a
}

// Delta returns a valid delta of any type.
func (r *Reader) Delta() connector.Delta {
	switch r.Intn(4) {
	case 0:
		return connector.Delta{Type: connector.DeltaAdd, Attributes: r.Attributes()}
	case 1:
		return connector.Delta{Type: connector.DeltaRecreate, Attributes: r.Attributes()}
	case 2:
		return connector.Delta{Type: connector.DeltaDelete}
	}
	d := connector.Delta{Type: connector.DeltaModify}
	for range 1 + r.Intn(3) {
		c := connector.AttributeDelta{Op: connector.ModOp(1 + r.Intn(3)), Name: r.NonEmpty()}
		for range r.Intn(3) {
			c.Values = append(c.Values, r.String())
		}
		d.Changes = append(d.Changes, c)
	}
	return d
}

// Pending returns a valid pending operation numbered id.
func (r *Reader) Pending(id int64) shadow.PendingOperation {
	op := shadow.PendingOperation{
		ID:     id,
		Delta:  r.Delta(),
		Type:   shadow.OpType(1 + r.Intn(3)),
		Status: shadow.ExecStatus(1 + r.Intn(4)),
		Result: shadow.OpResult(1 + r.Intn(3)),
	}
	if op.Status == shadow.StatusCompleted && op.Result == shadow.ResultInProgress {
		op.Result = shadow.ResultSuccess
	}
	op.Attempt = r.Intn(256)
	op.AsyncRef = r.String()
	op.RequestedAt, op.LastAttemptAt, op.NextAttemptAt, op.CompletedAt = r.Time(), r.Time(), r.Time(), r.Time()
	op.LastError = r.String()
	op.LastErrorCategory = connector.Category(r.Intn(10))
	op.CancelReason = r.String()
	return op
}

// Shadow returns a valid shadow without ID, version or store timestamps,
// on resourceID (so that a test can keep its shadows apart).
func (r *Reader) Shadow(resourceID string) *shadow.Shadow {
	s := &shadow.Shadow{
		ResourceID: resourceID,
		Class:      connector.ObjectClass(r.NonEmpty()),
		Kind:       r.String(),
		Intent:     r.String(),
		UID:        r.String(),
		Name:       r.String(),
		Attributes: r.Attributes(),
		Exists:     r.Bool(),
		Dead:       r.Bool(),
		Origin:     shadow.Origin(1 + r.Intn(2)),
	}
	if s.Exists && s.UID == "" && s.Name == "" {
		s.UID = "u"
	}
	if s.Dead {
		s.DeadSince = r.Time()
	}
	for i := range r.Intn(4) {
		s.Pending = append(s.Pending, r.Pending(int64(i+1)))
	}
	s.NextDue = r.Time()
	s.NeedsReconciliation = r.Bool()
	s.ReconciledAt = r.Time()
	return s
}
