package livesync

import (
	"context"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// nameLimit is how many shadows with a name correlate reads: the first in ID
// order; more than a few share a name only when adds piled up.
const nameLimit = 4

// prefetch holds the shadows that the changes of a group may correlate to,
// read with one shadow.IdentifierFinder call at the start of the group, so
// that correlate answers from memory instead of one or two store queries per
// change. The group's writes are not stored before its commit, so until then
// the store holds what was read; the commit resets the prefetch. (Another
// writer's changes meanwhile make the commit fail on a version or identity
// conflict, and replayGroup reads every shadow again.)
//
// It answers only for identifiers it looked up, with the complete answer the
// store would give for each. A shadow it hands out is the caller's: its UID
// and Name are no longer covered, so it is never read or handed out again
// (later changes of its object find the group's pending write first, or ask
// the store).
type prefetch struct {
	// until is the index, in the fetch being processed, of the first
	// change not looked up; 0 after reset.
	until int
	// byUID and byName hold, for each identifier looked up, the shadows
	// not dead that have it, in ID order (none: looked up, nothing found).
	byUID, byName map[string][]*shadow.Shadow
	uids, names   []string
}

// reset forgets what was read: after a commit, or before a new fetch.
func (p *prefetch) reset() {
	p.until = 0
	clear(p.byUID)
	clear(p.byName)
}

// load looks up with f the shadows that changes (the rest of a group) may
// correlate to. A change without attributes is left out: the Get that
// fetches them may report other identifiers. On error nothing is covered.
func (p *prefetch) load(ctx context.Context, f shadow.IdentifierFinder, resourceID string, class connector.ObjectClass, changes []connector.Change) error {
	p.reset()
	if p.byUID == nil {
		p.byUID, p.byName = make(map[string][]*shadow.Shadow), make(map[string][]*shadow.Shadow)
	}
	p.uids, p.names = p.uids[:0], p.names[:0]
	for i := range changes {
		ch := &changes[i]
		if ch.Type != connector.ChangeDelete && ch.Object == nil {
			continue
		}
		p.uids = lookUp(p.byUID, p.uids, ch.ID.UID)
		p.names = lookUp(p.byName, p.names, ch.ID.Name)
		p.names = lookUp(p.byName, p.names, ch.OldName)
	}
	if len(p.uids) == 0 && len(p.names) == 0 {
		return nil
	}
	found, err := f.FindByIdentifiers(ctx, resourceID, class, p.uids, p.names)
	if err != nil {
		p.reset()
		return err
	}
	for _, sh := range found {
		if l, ok := p.byUID[sh.UID]; ok {
			p.byUID[sh.UID] = append(l, sh)
		}
		if l, ok := p.byName[sh.Name]; ok {
			p.byName[sh.Name] = append(l, sh)
		}
	}
	return nil
}

// lookUp adds v to the identifiers to look up, once, and marks it covered.
func lookUp(covered map[string][]*shadow.Shadow, list []string, v string) []string {
	if v == "" {
		return list
	}
	if _, ok := covered[v]; ok {
		return list
	}
	covered[v] = nil
	return append(list, v)
}

// correlate finds the shadow of the object id as run.correlate's store
// lookups would: by UID the first that exists (as shadow.FindLive), then by
// Name and oldName (see byName). ok is false when an identifier is not
// covered; the caller asks the store.
func (p *prefetch) correlate(id connector.Identifiers, oldName string) (sh *shadow.Shadow, ok bool) {
	if !covered(p.byUID, id.UID) || !covered(p.byName, id.Name) || !covered(p.byName, oldName) {
		return nil, false
	}
	if id.UID != "" {
		for _, sh := range p.byUID[id.UID] {
			if sh.Exists {
				return p.take(sh), true
			}
		}
	}
	for _, name := range [2]string{id.Name, oldName} {
		if name == "" {
			continue
		}
		l := p.byName[name]
		if sh := byName(l[:min(len(l), nameLimit)], id.UID); sh != nil {
			return p.take(sh), true
		}
	}
	return nil, true
}

// covered reports whether the identifier v is empty or was looked up.
func covered(m map[string][]*shadow.Shadow, v string) bool {
	if v == "" {
		return true
	}
	_, ok := m[v]
	return ok
}

// take hands sh out: its identifiers are no longer covered, so that it is
// never read again.
func (p *prefetch) take(sh *shadow.Shadow) *shadow.Shadow {
	delete(p.byUID, sh.UID)
	delete(p.byName, sh.Name)
	return sh
}

// byName picks the shadow of an object of UID uid (empty: unknown) among
// list, the first shadows not dead with one of its names in ID order:
// skipping those whose object cannot be this one (another UID, or an add
// that never reached the resource).
func byName(list []*shadow.Shadow, uid string) *shadow.Shadow {
	for _, sh := range list {
		if sh.UID == "" && addUnsent(sh) {
			// The object cannot be this shadow's: its add has not
			// reached the resource. Someone else made it.
			continue
		}
		if uid == "" || sh.UID == "" || sh.UID == uid {
			return sh
		}
	}
	return nil
}
