package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

// Claim marks up to limit shadows selected by q as claimed by owner until
// now+ttl and returns copies of them; see shadow.Claimer. A shadow under an
// unexpired claim is skipped whoever holds it, the owner included: a claim
// hands a shadow out once until it expires or is released. limit <= 0 means
// no cap other than q.Limit. Claims are not part of the shadow: they
// survive Update and do not change Version.
func (s *Store) Claim(ctx context.Context, q shadow.Query, owner string, ttl time.Duration, limit int) ([]*shadow.Shadow, error) {
	if err := ctxErr(ctx, "claim"); err != nil {
		return nil, err
	}
	if err := validateQuery(q); err != nil {
		return nil, err
	}
	switch {
	case owner == "":
		return nil, fmt.Errorf("memstore: claim: empty owner: %w", shadow.ErrInvalid)
	case ttl <= 0:
		return nil, fmt.Errorf("memstore: claim: ttl %s is not positive: %w", ttl, shadow.ErrInvalid)
	}
	if q.Limit > 0 && (limit <= 0 || q.Limit < limit) {
		limit = q.Limit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var claimed []*record
	s.scan(q, func(r *record) bool {
		if c, ok := s.claims[r.id]; ok && c.until.After(now) {
			return true
		}
		claimed = append(claimed, r)
		return limit <= 0 || len(claimed) < limit
	})
	out := make([]*shadow.Shadow, len(claimed))
	for i, r := range claimed {
		s.claims[r.id] = claim{owner: owner, until: now.Add(ttl)}
		out[i] = r.shadow()
	}
	return out, nil
}

// Release drops owner's claims on the shadows ids; see shadow.Claimer.
// Unknown IDs and shadows not claimed by owner are left alone.
func (s *Store) Release(ctx context.Context, owner string, ids ...string) error {
	if err := ctxErr(ctx, "release"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if c, ok := s.claims[id]; ok && c.owner == owner {
			delete(s.claims, id)
		}
	}
	return nil
}

// AcquireLease takes the lease name for owner for ttl; see shadow.Leaser.
// The term starts at 1 and increases whenever the lease passes to an owner
// that does not hold it (after expiry or release); the holder acquiring
// again renews it in the same term.
func (s *Store) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (shadow.Lease, error) {
	if err := ctxErr(ctx, "acquire lease"); err != nil {
		return shadow.Lease{}, err
	}
	if err := validateLease(name, owner, ttl); err != nil {
		return shadow.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	cur, ok := s.leases[name]
	held := ok && cur.Owner != "" && cur.Expires.After(now)
	switch {
	case held && cur.Owner != owner:
		return shadow.Lease{}, fmt.Errorf("memstore: acquire lease %q: held by %q until %s: %w",
			name, cur.Owner, cur.Expires.Format(time.RFC3339Nano), shadow.ErrLeaseHeld)
	case held:
		cur.Expires = now.Add(ttl)
	default:
		cur = shadow.Lease{Name: name, Owner: owner, Term: cur.Term + 1, Expires: now.Add(ttl)}
	}
	s.leases[name] = cur
	return cur, nil
}

// RenewLease extends l by ttl from now; see shadow.Leaser. A lease that
// expired but that nobody took over is still the holder's to renew.
func (s *Store) RenewLease(ctx context.Context, l shadow.Lease, ttl time.Duration) (shadow.Lease, error) {
	if err := ctxErr(ctx, "renew lease"); err != nil {
		return shadow.Lease{}, err
	}
	if err := validateLease(l.Name, l.Owner, ttl); err != nil {
		return shadow.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.leases[l.Name]
	if !ok || cur.Owner != l.Owner || cur.Term != l.Term {
		return shadow.Lease{}, fmt.Errorf("memstore: renew lease %q for %q in term %d: %w",
			l.Name, l.Owner, l.Term, shadow.ErrLeaseLost)
	}
	cur.Expires = s.clock.Now().Add(ttl)
	s.leases[l.Name] = cur
	return cur, nil
}

// ReleaseLease gives l up; see shadow.Leaser. The term is kept, so the next
// holder gets a higher one and fenced writes of l's term fail.
func (s *Store) ReleaseLease(ctx context.Context, l shadow.Lease) error {
	if err := ctxErr(ctx, "release lease"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.leases[l.Name]; ok && cur.Owner == l.Owner && cur.Term == l.Term {
		s.leases[l.Name] = shadow.Lease{Name: l.Name, Term: cur.Term}
	}
	return nil
}

func validateLease(name, owner string, ttl time.Duration) error {
	switch {
	case name == "":
		return fmt.Errorf("memstore: lease: empty name: %w", shadow.ErrInvalid)
	case owner == "":
		return fmt.Errorf("memstore: lease %q: empty owner: %w", name, shadow.ErrInvalid)
	case ttl <= 0:
		return fmt.Errorf("memstore: lease %q: ttl %s is not positive: %w", name, ttl, shadow.ErrInvalid)
	}
	return nil
}
