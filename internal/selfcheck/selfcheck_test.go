package selfcheck

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glmctl/glmctl/internal/config"
)

// TestRunWithoutKeyFailsClearly: with no key and nowhere to create a
// temporary one, the right-key check fails saying what to do — it is never
// skipped into a pass.
func TestRunWithoutKeyFailsClearly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"message":"no","type":"invalid_request_error","code":"invalid_api_key"}}`))
	}))
	defer srv.Close()
	for name, cfg := range map[string]*config.Config{
		"no config": nil,
		"no guard":  {},
		"keys file cannot be written": {Guard: &config.Guard{Listen: "127.0.0.1:1", Upstream: "http://127.0.0.1:2",
			KeysFile: filepath.Join(t.TempDir(), "no-such-dir", "api_keys.json")}},
	} {
		t.Run(name, func(t *testing.T) {
			res := Run(context.Background(), Options{URL: srv.URL, Config: cfg})
			if len(res) != 7 || res[2].Name != CheckRightKey || res[2].Status != Fail || !strings.Contains(res[2].Detail, "--key") {
				t.Fatalf("right key: %+v", res[2])
			}
			if ok, _ := Passed(res); ok {
				t.Error("Passed with a failed right-key check")
			}
		})
	}
}

func TestPassed(t *testing.T) {
	pass := Result{Name: "a", Status: Pass}
	optional := Result{Name: "b", Status: Skip, Optional: true}
	skip := Result{Name: "c", Status: Skip}
	fail := Result{Name: "d", Status: Fail}
	for _, tc := range []struct {
		in      []Result
		ok      bool
		skipped int
	}{
		{[]Result{pass, optional}, true, 0},
		{[]Result{pass, skip}, false, 1},
		{[]Result{pass, fail}, false, 0},
		{[]Result{skip, fail, skip}, false, 2},
	} {
		ok, skipped := Passed(tc.in)
		if ok != tc.ok || len(skipped) != tc.skipped {
			t.Errorf("Passed(%v) = %v, %d skipped; want %v, %d", tc.in, ok, len(skipped), tc.ok, tc.skipped)
		}
	}
}
