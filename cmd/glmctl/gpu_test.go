package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGPUJSONAlwaysJSON: `gpu --json` prints JSON whatever NVML says: the
// GPUs (exit 0), or an object whose "error" says why (exit 1) — on a
// machine without an NVIDIA driver, and with a broken config around.
func TestGPUJSONAlwaysJSON(t *testing.T) {
	for _, args := range [][]string{
		{"gpu", "--json"},
		{"gpu", "--json", "-c", "/nonexistent/glmctl.hcl"},
	} {
		r := glmctl(t, args...)
		t.Logf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		switch r.code {
		case 0:
			var gpus []map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &gpus); err != nil {
				t.Errorf("%v: exit 0 but not a JSON array: %v\n%s", args, err, r.stdout)
			}
		case 1:
			var out struct {
				Error *string          `json:"error"`
				GPUs  []map[string]any `json:"gpus"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Error == nil || *out.Error == "" || out.GPUs == nil {
				t.Errorf("%v: exit 1 without a JSON object naming the error (%v):\n%s", args, err, r.stdout)
			} else if !strings.Contains(r.stderr, *out.Error) {
				t.Errorf("%v: stderr %q does not say why", args, r.stderr)
			}
		default:
			t.Errorf("%v: exit %d, want 0 or 1", args, r.code)
		}
	}
}
