package guard

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// TestRevokedKeyAuditedByName: the 401 of a revoked key names the key in the
// audit trail, so the operator sees who still uses it.
func TestRevokedKeyAuditedByName(t *testing.T) {
	h := newHarness(t)
	replaceFile(t, h.keysPath, `{"api_keys": {
  "user1": "`+keyUser1+`",
  "gone": {"sha256": "`+keys.Hash(keyUser2)+`", "disabled": true}
}}`)
	waitFor(t, 10*time.Second, "revocation in force", func() bool {
		resp, _ := h.do(t, "GET", "/v1/models", keyUser2, nil)
		return resp.StatusCode == 401
	})
	resp, _ := h.do(t, "GET", "/v1/models", keyUser2, nil)
	recs := h.audit.completed(t, resp.Header.Get("X-Request-Id"))
	if got := recs[len(recs)-1]; got.Key != "gone" || got.Status != 401 {
		t.Fatalf("audit record of a revoked key: key %q status %d, want \"gone\" 401", got.Key, got.Status)
	}
}

// TestMissingKeysFileRecorded: a keys file that disappears keeps the keys in
// force, and leaves an admin record and a failed reload, once.
func TestMissingKeysFileRecorded(t *testing.T) {
	h := newHarness(t)
	if err := os.Remove(h.keysPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "keys.reload_failed recorded", func() bool {
		for _, r := range h.audit.snapshot() {
			if r.Stage == audit.StageAdmin && r.Action == ActionKeysInvalid && strings.Contains(r.Error, "no such file") {
				return true
			}
		}
		return false
	})
	if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 200 {
		t.Fatalf("keys lost with their file: %d", resp.StatusCode)
	}
	if h.g.Healthy() {
		t.Fatal("guard reports its files healthy with the keys file gone")
	}
	if err := h.g.Reload(); err == nil {
		t.Fatal("reload with the keys file gone succeeded")
	}
	n := 0
	for _, r := range h.audit.snapshot() {
		if r.Action == ActionKeysInvalid {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d keys.reload_failed records for one disappearance, want 1", n)
	}
}

// TestLimitsNamesExact: a limits entry's fields are matched exactly ("RPM"
// is ignored, as its warning says, not folded into rpm), and a field or
// section given twice is an error instead of the last one silently winning.
func TestLimitsNamesExact(t *testing.T) {
	l, warns, err := ParseLimits([]byte(`{"rate_limits": {"u": {"rpm": 60, "RPM": 0}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.For("u"); got.RPM != 60 {
		t.Fatalf("rpm = %d: \"RPM\" was folded into rpm", got.RPM)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], `"RPM"`) {
		t.Fatalf("warnings %q", warns)
	}
	for _, src := range []string{
		`{"rate_limits": {"u": {"rpm": 60, "rpm": 0}}}`,
		`{"rate_limits": {"u": {"rpm": 1}}, "rate_limits": {}}`,
	} {
		if _, _, err := ParseLimits([]byte(src)); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("%s: err = %v, want a \"given twice\" error", src, err)
		}
	}
}
