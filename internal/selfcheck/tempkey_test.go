package selfcheck

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/guard"
)

func TestTempKeyRoundTrip(t *testing.T) {
	for name, limits := range map[string]string{
		"tutorial": "",
		"empty":    "{\"rate_limits\": {}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			lf := filepath.Join(dir, "rate_limits.json")
			kf := filepath.Join(dir, "api_keys.json")
			src := []byte(limits)
			if limits == "" {
				var err error
				if src, err = os.ReadFile("../../testdata/tutorial/rate_limits.json"); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(lf, src, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(kf, []byte(`{"api_keys": {"a": "sk-aaaaaaaaaaaaaaaa"}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			tk, err := newTempKey(kf, lf, 1, 10*time.Minute, now)
			if err != nil {
				t.Fatal(err)
			}
			l, _, err := guard.ReadLimits(lf)
			if err != nil {
				t.Fatal(err)
			}
			if got := l.For(tk.name).RPM; got != 1 {
				t.Errorf("temporary key rpm %d, want 1", got)
			}
			if limits == "" && l.For("user1").RPM != 120 {
				t.Errorf("user1 limits lost: %+v", l.For("user1"))
			}
			f, _, err := keys.ReadFile(kf)
			if err != nil {
				t.Fatal(err)
			}
			k, err := keys.NewSet(f).Lookup(tk.secret, now)
			if err != nil || k.Name != tk.name {
				t.Fatalf("temporary key: %v %v", k, err)
			}
			if _, err := keys.NewSet(f).Lookup(tk.secret, now.Add(11*time.Minute)); err == nil {
				t.Error("temporary key does not expire")
			}
			if err := tk.drop(); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(lf)
			if string(got) != string(src) {
				t.Errorf("limits file not restored:\n%s", got)
			}
			if st, _ := os.Stat(lf); st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
			}
			if f, _, _ := keys.ReadFile(kf); f.Entry(tk.name) != nil || f.Entry("a") == nil {
				t.Error("keys file not restored")
			}
		})
	}
}

func TestTempKeyRefusesBrokenLimits(t *testing.T) {
	dir := t.TempDir()
	lf := filepath.Join(dir, "rate_limits.json")
	kf := filepath.Join(dir, "api_keys.json")
	if err := os.WriteFile(lf, []byte(`{"limits": {}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, []byte(`{"api_keys": {}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newTempKey(kf, lf, 1, time.Minute, time.Now()); err == nil || !strings.Contains(err.Error(), "rate_limits") {
		t.Errorf("err = %v", err)
	}
	if f, _, _ := keys.ReadFile(kf); len(f.Entries) != 0 {
		t.Error("a key was added although its limit could not be")
	}
}

func TestResultString(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{Name: "x", Status: Pass}, "✅ x"},
		{Result{Name: "x", Status: Fail, Detail: "why"}, "❌ x: why"},
		{Result{Name: "x", Status: Skip, Detail: "why"}, "⚠ skipped: x: why"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestRunUnreachable: with nothing listening, no file is touched and the
// checks that need the guard are skipped after one failure.
func TestRunUnreachable(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "api_keys.json")
	lf := filepath.Join(dir, "rate_limits.json")
	for _, f := range []string{kf, lf} {
		if err := os.WriteFile(f, []byte(`{"api_keys": {}, "rate_limits": {}}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := &config.Config{Guard: &config.Guard{Listen: addr, Upstream: "unix://" + filepath.Join(dir, "none.sock"), KeysFile: kf, LimitsFile: lf}}
	res := Run(context.Background(), Options{URL: "http://" + addr, Key: "sk-x", Config: cfg})
	if len(res) != 7 || res[0].Status != Fail || res[3].Status != Skip {
		t.Fatalf("results %+v", res)
	}
	for _, f := range []string{kf, lf} {
		if b, _ := os.ReadFile(f); string(b) != `{"api_keys": {}, "rate_limits": {}}` {
			t.Errorf("%s changed: %s", f, b)
		}
	}
}
