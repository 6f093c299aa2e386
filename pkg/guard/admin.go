package guard

import (
	"context"
	"slices"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// Actions of the admin records the guard writes when a reload changes who may
// call (DESIGN.md "Audit record": key created, revoked, rotated… are records
// too). `glmctl keys` only edits the file; the running guard is what sees the
// change take effect, so it records it, on the daemon's one hash chain.
const (
	ActionKeyCreated   = "key.created"
	ActionKeyRemoved   = "key.removed"
	ActionKeyRevoked   = "key.revoked"
	ActionKeyEnabled   = "key.enabled"
	ActionKeyRotated   = "key.rotated"
	ActionKeyChanged   = "key.changed" // role, models or expiry
	ActionKeysInvalid  = "keys.reload_failed"
	ActionLimitsLoaded = "limits.reloaded"
	ActionLimitsFailed = "limits.reload_failed"
)

// adminWriteTimeout bounds how long a reload waits for its admin records.
const adminWriteTimeout = 5 * time.Second

// keyChanges lists, as admin records, what differs between two versions of
// the keys file. Records name keys, never secrets or hashes.
func keyChanges(old, cur *keys.File) []*audit.Record {
	var out []*audit.Record
	add := func(action string, e *keys.Entry) {
		out = append(out, &audit.Record{Stage: audit.StageAdmin, Action: action, Target: e.Name, Role: e.Role})
	}
	before := make(map[string]*keys.Entry, len(old.Entries))
	for _, o := range old.Entries {
		before[o.Name] = o
	}
	now := make(map[string]bool, len(cur.Entries))
	for _, e := range cur.Entries {
		now[e.Name] = true
		o := before[e.Name]
		if o == nil {
			add(ActionKeyCreated, e)
			continue
		}
		switch {
		case !o.Disabled && e.Disabled:
			add(ActionKeyRevoked, e)
		case o.Disabled && !e.Disabled:
			add(ActionKeyEnabled, e)
		}
		if currentHash(o) != currentHash(e) {
			add(ActionKeyRotated, e)
		}
		if o.Role != e.Role || !slices.Equal(o.Models, e.Models) || !o.Expires.Equal(e.Expires) {
			add(ActionKeyChanged, e)
		}
	}
	for _, o := range old.Entries {
		if !now[o.Name] {
			add(ActionKeyRemoved, o)
		}
	}
	return out
}

// currentHash is the SHA-256 (hex) of the entry's current secret.
func currentHash(e *keys.Entry) string {
	if e.Clear != "" {
		return keys.Hash(e.Clear)
	}
	return e.SHA256
}

// writeAdmin writes admin records; a failure is logged, never fatal (the
// reload itself has happened).
func (g *Guard) writeAdmin(recs []*audit.Record) {
	if g.audit == nil || len(recs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminWriteTimeout)
	defer cancel()
	for _, r := range recs {
		if err := g.audit.Write(ctx, r); err != nil {
			g.log.Error("audit admin record could not be written", "action", r.Action, "target", r.Target, "error", err)
		}
	}
}
