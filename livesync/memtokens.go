package livesync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/umbra-idm/umbra/connector"
)

// MemoryTokenStore is a TokenStore in memory: for tests, examples and
// single-process hosts whose live sync may start over from the resource's
// latest token after a restart. It is safe for concurrent use and passes
// the suite in livesync/tokenstoretest. It does not implement
// FencedTokenStore: a lease guards runners of several processes, and
// memory is never shared by several processes.
//
// The zero value is not usable; call NewMemoryTokenStore.
type MemoryTokenStore struct {
	mu     sync.Mutex
	tokens map[TokenKey]connector.Token
	aside  map[TokenKey][]setAsideEntry
	seq    uint64
}

// setAsideEntry keeps the order in which an entry was first set aside, the
// tie-breaker among entries set aside at the same time.
type setAsideEntry struct {
	c   SetAsideChange
	seq uint64
}

var _ TokenStore = (*MemoryTokenStore)(nil)

// NewMemoryTokenStore returns an empty token store.
func NewMemoryTokenStore() *MemoryTokenStore {
	return &MemoryTokenStore{
		tokens: make(map[TokenKey]connector.Token),
		aside:  make(map[TokenKey][]setAsideEntry),
	}
}

func checkCall(ctx context.Context, op string, key TokenKey) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("livesync: memory token store: %s %s: %w", op, key, err)
	}
	if err := key.Validate(); err != nil {
		return fmt.Errorf("livesync: memory token store: %s: %w", op, err)
	}
	return nil
}

// LoadToken returns key's token; see TokenStore.
func (m *MemoryTokenStore) LoadToken(ctx context.Context, key TokenKey) (connector.Token, bool, error) {
	if err := checkCall(ctx, "load token", key); err != nil {
		return "", false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tok, ok := m.tokens[key]
	return tok, ok, nil
}

// CompareAndSwapToken stores next when key's token is old; see TokenStore.
func (m *MemoryTokenStore) CompareAndSwapToken(ctx context.Context, key TokenKey, old, next connector.Token) error {
	if err := checkCall(ctx, "compare and swap token", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.tokens[key]; cur != old {
		return fmt.Errorf("livesync: memory token store: token of %s is not the expected one: %w", key, ErrTokenConflict)
	}
	m.tokens[key] = next
	return nil
}

// SetAside stores a copy of c under key, replacing the entry with c.ID;
// see TokenStore. A replaced entry keeps its place among entries set aside
// at the same time.
func (m *MemoryTokenStore) SetAside(ctx context.Context, key TokenKey, c SetAsideChange) error {
	if err := checkCall(ctx, "set aside", key); err != nil {
		return err
	}
	if c.ID == "" {
		return fmt.Errorf("livesync: memory token store: set aside under %s: %w", key, errors.New("empty change ID"))
	}
	c.Change.Object = c.Change.Object.Clone()
	m.mu.Lock()
	defer m.mu.Unlock()
	list := m.aside[key]
	for i := range list {
		if list[i].c.ID == c.ID {
			list[i].c = c
			return nil
		}
	}
	m.seq++
	m.aside[key] = append(list, setAsideEntry{c: c, seq: m.seq})
	return nil
}

// SetAsideChanges returns copies of key's set-aside changes, oldest
// SetAsideAt first; see TokenStore.
func (m *MemoryTokenStore) SetAsideChanges(ctx context.Context, key TokenKey) ([]SetAsideChange, error) {
	if err := checkCall(ctx, "list set-aside changes", key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	entries := slices.Clone(m.aside[key])
	m.mu.Unlock()
	slices.SortFunc(entries, func(a, b setAsideEntry) int {
		if c := a.c.SetAsideAt.Compare(b.c.SetAsideAt); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	out := make([]SetAsideChange, len(entries))
	for i, e := range entries {
		out[i] = e.c
		out[i].Change.Object = e.c.Change.Object.Clone()
	}
	return out, nil
}

// RemoveSetAside deletes key's entry id; see TokenStore.
func (m *MemoryTokenStore) RemoveSetAside(ctx context.Context, key TokenKey, id string) error {
	if err := checkCall(ctx, "remove set-aside change", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	list := slices.DeleteFunc(m.aside[key], func(e setAsideEntry) bool { return e.c.ID == id })
	if len(list) == 0 {
		delete(m.aside, key)
	} else {
		m.aside[key] = list
	}
	return nil
}
