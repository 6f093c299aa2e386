package guard

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

// TestRevokedKeyRefusedAfterWrite measures the time from the rename that
// revokes a key to the first 401 for it.
func TestRevokedKeyRefusedAfterWrite(t *testing.T) {
	h := newHarness(t)
	if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	revoked := strings.Replace(defaultKeysFile(), `"user1": "`+keyUser1+`",`, ``, 1)
	wrote := time.Now()
	replaceFile(t, h.keysPath, revoked)
	var took time.Duration
	// The target is 1 s (debounce 100 ms, bounded by maxDelay); the test
	// waits generously so that a loaded CI machine cannot make it flaky, and
	// reports the real figure.
	waitFor(t, 15*time.Second, "revoked key refused", func() bool {
		resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil)
		took = time.Since(wrote)
		return resp.StatusCode == 401
	})
	t.Logf("revoked key refused %v after the file was renamed into place (target: under 1 s)", took)
	if took > time.Second {
		t.Logf("NOTE: over the 1 s target on this run (a loaded machine?)")
	}
	if resp, _ := h.do(t, "GET", "/v1/models", keyUser2, nil); resp.StatusCode != 200 {
		t.Fatalf("other keys must keep working: %d", resp.StatusCode)
	}
	if v := counterValue(t, h, "glmctl_config_last_reload_successful", h.keysPath); v != 1 {
		t.Fatalf("reload metric = %d", v)
	}
}

// TestSymlinkSwap reloads the way Kubernetes updates a mounted secret: the
// file is a symlink into a directory that is swapped by renaming a symlink.
func TestSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(dir, "v1", "api_keys.json"), defaultKeysFile())
	mustWrite(t, filepath.Join(dir, "v2", "api_keys.json"), `{"api_keys": {"only": "`+keyUser2+`"}}`)
	must(t, os.Symlink("v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/api_keys.json", filepath.Join(dir, "api_keys.json")))
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.KeysFile = filepath.Join(dir, "api_keys.json") })
	if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	must(t, os.Symlink("v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	waitFor(t, 15*time.Second, "symlink swap picked up", func() bool {
		resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil)
		return resp.StatusCode == 401
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestInvalidReloadKeepsOldKeys(t *testing.T) {
	h := newHarness(t)
	replaceFile(t, h.keysPath, "{\"api_keys\": {\n  \"user1\": \""+keyUser1+"\"\n  \"x\": 1\n}}")
	waitFor(t, 15*time.Second, "failed reload logged", func() bool {
		return counterValue(t, h, "glmctl_config_last_reload_successful", h.keysPath) == 0 &&
			strings.Contains(h.logs.String(), "keys file not loaded")
	})
	logs := h.logs.String()
	if !strings.Contains(logs, "3:3") {
		t.Fatalf("log does not give line:col 3:3:\n%s", logs)
	}
	if strings.Contains(logs, keyUser1) || strings.Contains(logs, keyUser2) {
		t.Fatal("a key appeared in the log")
	}
	for _, k := range []string{keyUser1, keyUser2, keyAdmin} {
		if resp, _ := h.do(t, "GET", "/v1/models", k, nil); resp.StatusCode != 200 {
			t.Fatalf("old keys lost after an invalid reload: %d", resp.StatusCode)
		}
	}
	if err := h.g.Reload(); err == nil || !strings.Contains(err.Error(), "3:3") {
		t.Fatalf("Reload() = %v, want the line:col", err)
	}
	// Fixing the file recovers.
	replaceFile(t, h.keysPath, `{"api_keys": {"user2": "`+keyUser2+`"}}`)
	waitFor(t, 15*time.Second, "good reload", func() bool {
		return counterValue(t, h, "glmctl_config_last_reload_successful", h.keysPath) == 1
	})
	if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 401 {
		t.Fatalf("user1 should be gone: %d", resp.StatusCode)
	}
}

// TestLimitStateSurvivesReload: a key that spent its budget does not get a
// new one because the limits file was touched.
func TestLimitStateSurvivesReload(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 5; i++ {
		if resp, _ := h.do(t, "GET", "/v1/models", keyLimit, nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	replaceFile(t, h.cfg.LimitsFile, defaultLimitsFile+"\n# touched\n")
	replaceFile(t, h.keysPath, defaultKeysFile()+"\n# touched\n")
	before := counterValue(t, h, "glmctl_config_last_reload_success_timestamp_seconds", h.cfg.LimitsFile)
	waitFor(t, 15*time.Second, "limits reloaded", func() bool {
		return counterValue(t, h, "glmctl_config_last_reload_success_timestamp_seconds", h.cfg.LimitsFile) != before ||
			strings.Contains(h.logs.String(), "limits reloaded")
	})
	if resp, _ := h.do(t, "GET", "/v1/models", keyLimit, nil); resp.StatusCode != 429 {
		t.Fatalf("budget reset by a reload: %d", resp.StatusCode)
	}
}

// TestReloadUnderLoad swaps the keys file repeatedly while requests run:
// no request fails for a key that stays valid, and a key that is never
// valid is never let in.
func TestReloadUnderLoad(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {}}`))
	alt := `{"api_keys": {"user2": {"sha256": "` + keys.Hash(keyUser2) + `"}, "tmp": "sk-tmp-0123456789abcdefghij"}}`
	stop := make(chan struct{})
	var bad, good atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key, want := keyUser2, 200
			if w == 3 {
				key, want = "sk-never-0123456789abcdefgh", 401
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", h.url+"/v1/models", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := client.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					bad.Add(1)
				} else {
					good.Add(1)
				}
			}
		}(w)
	}
	for i := 0; i < 10; i++ {
		if i%2 == 0 {
			replaceFile(t, h.keysPath, alt)
		} else {
			replaceFile(t, h.keysPath, defaultKeysFile())
		}
		time.Sleep(120 * time.Millisecond) // let each version be loaded and used
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 || good.Load() < 40 {
		t.Fatalf("good %d, bad %d", good.Load(), bad.Load())
	}
}

// TestReloadNotStarvedByBusyDirectory: a file written without pause in the
// same directory neither triggers reloads nor delays one.
func TestReloadNotStarvedByBusyDirectory(t *testing.T) {
	h := newHarness(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		noisy := filepath.Join(h.dir, "busy.log")
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.WriteFile(noisy, []byte(time.Now().String()), 0o600)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { close(stop); <-done }()
	replaceFile(t, h.keysPath, `{"api_keys": {"user2": "`+keyUser2+`"}}`)
	waitFor(t, 15*time.Second, "revocation despite a busy directory", func() bool {
		resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil)
		return resp.StatusCode == 401
	})
}

// TestReloadWritesAdminRecords: a reload that changes who may call leaves
// one admin record per change (created, removed, revoked, rotated, changed),
// naming keys and never their secrets or hashes; a file that does not parse
// leaves a reload_failed record with line:col; a limits reload is recorded.
func TestReloadWritesAdminRecords(t *testing.T) {
	h := newHarness(t)
	const keyNew = "sk-carol-0123456789abcdefghijklmnop"
	const keyRotated = "sk-user2-rotated-0123456789abcdefgh"
	next := `{"api_keys": {
  "user2": {"sha256": "` + keys.Hash(keyRotated) + `", "models": ["glm-4.7-flash", "hold", "slow", "fail"]},
  "admin": {"sha256": "` + keys.Hash(keyAdmin) + `", "role": "admin", "disabled": true},
  "limited": {"sha256": "` + keys.Hash(keyLimit) + `", "role": "admin"},
  "carol": {"sha256": "` + keys.Hash(keyNew) + `"}
}}`
	replaceFile(t, h.keysPath, next)
	want := map[string]string{
		"carol":   ActionKeyCreated,
		"user1":   ActionKeyRemoved,
		"admin":   ActionKeyRevoked,
		"user2":   ActionKeyRotated,
		"limited": ActionKeyChanged,
	}
	admin := func() []audit.Record {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		var out []audit.Record
		for _, r := range h.audit.recs {
			if r.Stage == audit.StageAdmin {
				out = append(out, r)
			}
		}
		return out
	}
	waitFor(t, 15*time.Second, "five admin records", func() bool { return len(admin()) >= len(want) })
	got := map[string]string{}
	for _, r := range admin() {
		got[r.Target] = r.Action
	}
	for name, action := range want {
		if got[name] != action {
			t.Errorf("key %q: admin action %q, want %q (all: %v)", name, got[name], action, got)
		}
	}
	if len(admin()) != len(want) {
		t.Errorf("admin records = %d, want %d: %+v", len(admin()), len(want), admin())
	}

	replaceFile(t, h.keysPath, `{"api_keys": {"x": 42}}`)
	waitFor(t, 15*time.Second, "reload_failed record", func() bool {
		recs := admin()
		return len(recs) > len(want) && recs[len(recs)-1].Action == ActionKeysInvalid
	})
	if last := admin()[len(admin())-1]; !strings.Contains(last.Error, h.keysPath+":1:20: ") || last.Target != h.keysPath {
		t.Errorf("reload_failed record: %+v, want the file and a line:col", last)
	}

	replaceFile(t, h.cfg.LimitsFile, `{"rate_limits": {"default": {"rpm": 7}}}`)
	waitFor(t, 15*time.Second, "limits.reloaded record", func() bool {
		recs := admin()
		return recs[len(recs)-1].Action == ActionLimitsLoaded && recs[len(recs)-1].Target == h.cfg.LimitsFile
	})

	all, err := json.Marshal(admin())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{keyUser1, keyUser2, keyNew, keyRotated, keys.Hash(keyRotated), keys.Hash(keyNew), keys.Hash(keyUser1)} {
		if strings.Contains(string(all), secret) {
			t.Fatalf("an admin record holds a secret or its hash: %s", all)
		}
	}
}
