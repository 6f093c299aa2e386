package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glmctl/glmctl/hcl"
)

func TestEmptyConfigDefaults(t *testing.T) {
	cfg, err := Parse(nil, "empty.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Log:     Log{Level: "info", Format: "text"},
		Control: Control{Socket: "/run/glmctl/glmctl.sock"},
	}
	cfg.SHA256, cfg.filename, cfg.places = "", "", nil // compared apart: TestConfigAt
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
}

func TestEmptyBlocksDefaults(t *testing.T) {
	src := `
metrics {}
gpu {}
program "p" {
  command = ["/bin/true"]
  health {
    tcp = "127.0.0.1:1"
  }
  backoff {}
  log {}
}
guard {
  upstream = "unix:///run/glmctl/vllm.sock"
  global {}
  tls {
    cert = "/c"
    key  = "/k"
  }
}
audit {
  rotate {}
}
`
	cfg, err := Parse([]byte(src), "blocks.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Log:     Log{Level: "info", Format: "text"},
		Control: Control{Socket: "/run/glmctl/glmctl.sock"},
		Metrics: &Metrics{Listen: "127.0.0.1:9400"},
		GPU:     &GPU{Required: true, ReleaseTimeout: 2 * time.Minute},
		Programs: []*Program{{
			Name:         "p",
			Command:      []string{"/bin/true"},
			Restart:      RestartAlways,
			StartSecs:    time.Second,
			StartRetries: 5,
			StartTimeout: 30 * time.Minute,
			StopSignal:   "SIGTERM",
			StopTimeout:  10 * time.Second,
			Backoff:      Backoff{Initial: time.Second, Max: 5 * time.Minute},
			Health:       &Health{TCP: "127.0.0.1:1", Interval: 10 * time.Second, Timeout: 5 * time.Second, Failures: 3},
			Log:          ProgramLog{MaxSize: 100 << 20, Keep: 10},
			Autostart:    true,
		}},
		Guard: &Guard{
			Listen:           "127.0.0.1:8000",
			Upstream:         "unix:///run/glmctl/vllm.sock",
			KeysFile:         "/etc/glmctl/api_keys.json",
			MaxBody:          4 << 20,
			DefaultMaxTokens: 1024,
			DrainTimeout:     30 * time.Second,
			MaxModelLen:      DefaultMaxModelLen,
			Global:           &GlobalLimits{},

			LimitsStoreFailure:          "closed",
			UpstreamHeaderTimeout:       5 * time.Minute,
			MaxUnauthenticatedPerClient: 256,
			HeaderTimeout:               10 * time.Second,
			BodyTimeout:                 30 * time.Second,
			IdleTimeout:                 time.Minute,
			TLS:                         &TLS{Cert: "/c", Key: "/k"},
		},
		Audit: &Audit{
			Path:    "/var/log/glmctl/audit.log",
			OnError: "reject",
			Fsync:   "interval",
			Level:   "metadata",
			Rotate:  Rotate{MaxSize: 100 << 20, Keep: 30, Compress: true},
		},
	}
	cfg.SHA256, cfg.filename, cfg.places = "", "", nil // compared apart: TestConfigAt
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%s\nwant\n%s", dump(cfg), dump(want))
	}
}

// TestFullConfig decodes testdata/valid-full.hcl, where every attribute is
// set away from its default, and compares every field.
func TestFullConfig(t *testing.T) {
	cfg, err := parseFixture(t, filepath.Join(testdataDir, "valid-full.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Log:     Log{Level: "debug", Format: "json"},
		Control: Control{Socket: "/tmp/glmctl/ctl.sock"},
		Metrics: &Metrics{Listen: "127.0.0.1:9500", BearerTokenFile: "/etc/glmctl/metrics.token"},
		GPU:     &GPU{Required: false, Count: 4, MinFreeMemory: 70 << 30, ReleaseTimeout: 90 * time.Second, RestartOnXID: true},
		Programs: []*Program{
			{
				Name:         "vllm",
				Command:      []string{"python3", "-m", "vllm.entrypoints.openai.api_server", "--uds", "/run/glmctl/vllm.sock"},
				Directory:    "/srv/glm",
				User:         "glm",
				Env:          map[string]string{"VLLM_ENGINE_READY_TIMEOUT_S": "1800"},
				GPUs:         []int{0, 1, 2, 3},
				Restart:      RestartOnFailure,
				StartSecs:    0,
				StartRetries: 3,
				StartTimeout: 20 * time.Minute,
				StopSignal:   "SIGINT",
				StopTimeout:  time.Minute,
				Backoff:      Backoff{Initial: 2 * time.Second, Max: time.Minute},
				Health: &Health{
					HTTP: "http://localhost/health", UnixSocket: "/run/glmctl/vllm.sock",
					Interval: 15 * time.Second, Timeout: 3 * time.Second, Failures: 5,
				},
				Log:       ProgramLog{Path: "/var/log/glmctl/vllm.log", MaxSize: 1000 * 1000 * 1000, Keep: 4},
				Autostart: false,
			},
			{
				Name:         "ui",
				Command:      []string{"python3", "/srv/glm/webui.py"},
				Restart:      RestartNever,
				StartSecs:    time.Second,
				StartRetries: 5,
				StartTimeout: 30 * time.Minute,
				StopSignal:   "SIGTERM",
				StopTimeout:  10 * time.Second,
				Backoff:      Backoff{Initial: time.Second, Max: 5 * time.Minute},
				Health: &Health{
					Exec:     []string{"/usr/bin/curl", "-fsS", "http://127.0.0.1:7860/"},
					Interval: 10 * time.Second, Timeout: 5 * time.Second, Failures: 3,
				},
				Log:       ProgramLog{MaxSize: 100 << 20, Keep: 10},
				DependsOn: []string{"vllm"},
				Autostart: true,
			},
			{
				Name:         "probe",
				Command:      []string{"sleep", "infinity"},
				Restart:      RestartAlways,
				StartSecs:    time.Second,
				StartRetries: 5,
				StartTimeout: 30 * time.Minute,
				StopSignal:   "SIGTERM",
				StopTimeout:  10 * time.Second,
				Backoff:      Backoff{Initial: time.Second, Max: 5 * time.Minute},
				Health:       &Health{TCP: "127.0.0.1:7860", Interval: 10 * time.Second, Timeout: 5 * time.Second, Failures: 3},
				Log:          ProgramLog{MaxSize: 100 << 20, Keep: 10},
				DependsOn:    []string{"vllm", "ui"},
				Autostart:    true,
			},
		},
		Guard: &Guard{
			Listen:           "0.0.0.0:8000",
			Upstream:         "unix:///run/glmctl/vllm.sock",
			Program:          "vllm",
			KeysFile:         "/etc/vllm/api_keys.json",
			LimitsFile:       "/etc/vllm/rate_limits.json",
			MaxBody:          1 << 20,
			DefaultMaxTokens: 512,
			TrustedProxies:   []string{"127.0.0.1/32"},
			DrainTimeout:     0,
			MaxModelLen:      8192,
			Global:           &GlobalLimits{RPM: 100, Concurrency: 50},

			MaxConnections:              2000,
			LimitsStoreFailure:          "closed",
			UpstreamHeaderTimeout:       5 * time.Minute,
			MaxUnauthenticatedPerClient: 8,
			HeaderTimeout:               5 * time.Second,
			BodyTimeout:                 20 * time.Second,
			IdleTimeout:                 30 * time.Second,
			TLS:                         &TLS{Cert: "/etc/glmctl/cert.pem", Key: "/etc/glmctl/key.pem"},
		},
		Audit: &Audit{
			Path:        "/var/log/glmctl/audit.jsonl",
			OnError:     "continue",
			Fsync:       "always",
			Level:       "request_response",
			HMACKeyFile: "/etc/glmctl/audit.key",
			Rotate:      Rotate{MaxSize: 0, Daily: true, Keep: 7, Compress: false},
		},
	}
	cfg.SHA256, cfg.filename, cfg.places = "", "", nil // compared apart: TestConfigAt
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%s\nwant\n%s", dump(cfg), dump(want))
	}
}

// dump prints a config with its pointers followed, for diffs by eye.
func dump(c *Config) string {
	lines := []string{fmt.Sprintf("%+v", *c)}
	add := func(name string, v any) { lines = append(lines, fmt.Sprintf("%s: %+v", name, v)) }
	if c.Metrics != nil {
		add("metrics", *c.Metrics)
	}
	if c.GPU != nil {
		add("gpu", *c.GPU)
	}
	for _, p := range c.Programs {
		add("program", *p)
		if p.Health != nil {
			add("  health", *p.Health)
		}
	}
	if c.Guard != nil {
		add("guard", *c.Guard)
		if c.Guard.Global != nil {
			add("  global", *c.Guard.Global)
		}
		if c.Guard.TLS != nil {
			add("  tls", *c.Guard.TLS)
		}
	}
	if c.Audit != nil {
		add("audit", *c.Audit)
	}
	return strings.Join(lines, "\n")
}

func TestExamples(t *testing.T) {
	opts := Options{Executable: "/opt/glmctl/bin/glmctl"}
	t.Run("demo", func(t *testing.T) {
		cfg, err := ParseWithOptions(hcl.Demo(), "demo.hcl", opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Warnings) > 0 {
			t.Errorf("demo.hcl has warnings:\n%v", cfg.Warnings)
		}
		if got := cfg.Control.Socket; got != "/tmp/glmctl-demo/glmctl.sock" {
			t.Errorf("control socket = %q", got)
		}
		if cfg.GPU == nil || cfg.GPU.Required {
			t.Errorf("gpu = %+v, want required = false", cfg.GPU)
		}
		vllm, ui := cfg.Program("vllm"), cfg.Program("ui")
		if vllm == nil || ui == nil {
			t.Fatalf("programs = %v", cfg.Programs)
		}
		wantCmd := []string{"/opt/glmctl/bin/glmctl", "stub", "vllm", "--uds", "/tmp/glmctl-demo/vllm.sock", "--load-time", "3s"}
		if !reflect.DeepEqual(vllm.Command, wantCmd) {
			t.Errorf("vllm command = %q, want %q", vllm.Command, wantCmd)
		}
		if vllm.Health == nil || vllm.Health.UnixSocket != "/tmp/glmctl-demo/vllm.sock" || vllm.Health.HTTP == "" {
			t.Errorf("vllm health = %+v", vllm.Health)
		}
		if ui.Command[0] != "/opt/glmctl/bin/glmctl" || !reflect.DeepEqual(ui.DependsOn, []string{"vllm"}) {
			t.Errorf("ui = %+v", ui)
		}
		g := cfg.Guard
		if g == nil || g.Listen != "127.0.0.1:8000" || g.Upstream != "unix:///tmp/glmctl-demo/vllm.sock" ||
			g.KeysFile != "/tmp/glmctl-demo/api_keys.json" || g.LimitsFile != "/tmp/glmctl-demo/rate_limits.json" {
			t.Errorf("guard = %+v", g)
		}
		if cfg.Metrics == nil || cfg.Metrics.Listen != "127.0.0.1:9400" {
			t.Errorf("metrics = %+v", cfg.Metrics)
		}
		if cfg.Audit == nil || cfg.Audit.Path != "/tmp/glmctl-demo/audit.log" {
			t.Errorf("audit = %+v", cfg.Audit)
		}
		for _, p := range []string{cfg.Control.Socket, g.KeysFile, g.LimitsFile, cfg.Audit.Path, vllm.Log.Path, ui.Log.Path} {
			if !strings.HasPrefix(p, "/tmp/glmctl-demo/") {
				t.Errorf("state path %q is outside /tmp/glmctl-demo/", p)
			}
		}
	})
	t.Run("glm-4.7-flash", func(t *testing.T) {
		cfg, err := ParseWithOptions(hcl.GLM47Flash(), "glm-4.7-flash.hcl", opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Warnings) > 0 {
			t.Errorf("glm-4.7-flash.hcl has warnings:\n%v", cfg.Warnings)
		}
		vllm := cfg.Program("vllm")
		if vllm == nil || !reflect.DeepEqual(vllm.GPUs, []int{0, 1, 2, 3}) || vllm.StartTimeout != 30*time.Minute {
			t.Errorf("vllm = %+v", vllm)
		}
		if cfg.GPU == nil || cfg.GPU.Count != 4 || cfg.GPU.MinFreeMemory != 70<<30 {
			t.Errorf("gpu = %+v", cfg.GPU)
		}
		if cfg.Guard == nil || cfg.Guard.Listen != "0.0.0.0:8000" || cfg.Guard.Program != "vllm" {
			t.Errorf("guard = %+v", cfg.Guard)
		}
	})
}

func TestGlmctlBinAndEnv(t *testing.T) {
	cfg, err := parseFixture(t, filepath.Join(testdataDir, "valid-env.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Program("stub")
	wantCmd := []string{"/usr/local/bin/glmctl", "stub", "vllm", "--listen", "127.0.0.1:8101"}
	if !reflect.DeepEqual(p.Command, wantCmd) {
		t.Errorf("command = %q, want %q", p.Command, wantCmd)
	}
	wantEnv := map[string]string{"HOME": "/home/glm", "DEBUG": "0", "SEQS": "50"}
	if !reflect.DeepEqual(p.Env, wantEnv) {
		t.Errorf("env = %v, want %v", p.Env, wantEnv)
	}
}

func TestDefaultOptionsUseProcess(t *testing.T) {
	t.Setenv("GLMCTL_TEST_VALUE", "from-env")
	cfg, err := Parse([]byte(`program "p" {
  command = [glmctl_bin, env("GLMCTL_TEST_VALUE")]
}
`), "p.hcl")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{exe, "from-env"}
	if got := cfg.Programs[0].Command; !reflect.DeepEqual(got, want) {
		t.Errorf("command = %q, want %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "glmctl.hcl")
	if err := os.WriteFile(path, []byte("guard {\n  upstream = \"http://127.0.0.1:8001\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || cfg.Guard == nil || cfg.Guard.Upstream != "http://127.0.0.1:8001" {
		t.Errorf("cfg = %+v", cfg)
	}

	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte("guard {\n  upstream = 1\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	want := bad + `:2:14: upstream must be a string, got the number 1: write upstream = "1"`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.hcl"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestFind(t *testing.T) {
	t.Setenv(EnvVar, "")
	if got := Find(""); got != DefaultPath {
		t.Errorf("Find(\"\") = %q, want %q", got, DefaultPath)
	}
	t.Setenv(EnvVar, "/srv/env.hcl")
	if got := Find(""); got != "/srv/env.hcl" {
		t.Errorf("Find with %s = %q", EnvVar, got)
	}
	if got := Find("/srv/flag.hcl"); got != "/srv/flag.hcl" {
		t.Errorf("Find(flag) = %q, want the flag", got)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"100MiB", 100 << 20, true},
		{"4MiB", 4 << 20, true},
		{"70GiB", 70 << 30, true},
		{"1GB", 1000000000, true},
		{"1gb", 1000000000, true},
		{"512", 512, true},
		{"10 KiB", 10 << 10, true},
		{"1.5GiB", 3 << 29, true},
		{"0", 0, true},
		{"2TiB", 2 << 40, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"-1MiB", 0, false},
		{"1.5", 0, false},
		{"12 parsecs", 0, false},
		{"1.2.3MB", 0, false},
		{"99999999TiB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%t", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestSignal(t *testing.T) {
	for _, name := range []string{"SIGTERM", "TERM", "term", "sigterm"} {
		if sig, ok := Signal(name); !ok || sig != syscall.SIGTERM {
			t.Errorf("Signal(%q) = %v, %t", name, sig, ok)
		}
	}
	if _, ok := Signal("SIGSTOP"); ok {
		t.Error("SIGSTOP accepted as a stop signal")
	}
}

func TestGuardHelpers(t *testing.T) {
	for _, tc := range []struct {
		up, network, addr string
	}{
		{"unix:///run/glmctl/vllm.sock", "unix", "/run/glmctl/vllm.sock"},
		{"http://127.0.0.1:8001", "tcp", "127.0.0.1:8001"},
		{"http://localhost", "tcp", "localhost:80"},
		{"https://[::1]", "tcp", "[::1]:443"},
	} {
		n, a := (&Guard{Upstream: tc.up}).UpstreamDial()
		if n != tc.network || a != tc.addr {
			t.Errorf("UpstreamDial(%q) = %q, %q; want %q, %q", tc.up, n, a, tc.network, tc.addr)
		}
	}
	for _, tc := range []struct {
		listen string
		tls    bool
		want   string
	}{
		{"0.0.0.0:8000", false, "http://127.0.0.1:8000"},
		{":8000", false, "http://127.0.0.1:8000"},
		{"[::]:8000", true, "https://[::1]:8000"},
		{"192.168.1.2:8000", false, "http://192.168.1.2:8000"},
	} {
		g := &Guard{Listen: tc.listen}
		if tc.tls {
			g.TLS = &TLS{}
		}
		if got := g.LocalURL(); got != tc.want {
			t.Errorf("LocalURL(%q) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}

func TestProgramEqual(t *testing.T) {
	src := []byte("program \"p\" {\n  command = [\"/bin/true\"]\n}\n")
	a, err := Parse(src, "a.hcl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(src, "b.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Programs[0].Equal(b.Programs[0]) {
		t.Error("same source, programs differ")
	}
	b.Programs[0].StopTimeout++
	if a.Programs[0].Equal(b.Programs[0]) {
		t.Error("changed program still equal")
	}
}

// TestConfigAt: a problem about a setting is placed where the file writes
// it; a default setting at its block; an unwritten block at the file.
func TestConfigAt(t *testing.T) {
	cfg, err := parseFixture(t, filepath.Join(testdataDir, "valid-design.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"guard.tls.cert":        "valid-design.hcl:74:12: x",
		"program.vllm.user":     "valid-design.hcl:23:19: x",
		"program.vllm.health":   "valid-design.hcl:36:3: x",
		"audit.hmac_key_file":   "valid-design.hcl:84:19: x",
		"guard.max_connections": "valid-design.hcl:57:1: x", // a default: its block
		"console.listen":        "valid-design.hcl: x",      // no console block
	} {
		if got := cfg.At(path, "x").Error(); got != want {
			t.Errorf("At(%q) = %q, want %q", path, got, want)
		}
	}
}
