package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdataDir is the repository's shared testdata folder.
const testdataDir = "../../testdata"

// fixtureOptions makes fixture output independent of the machine.
func fixtureOptions() Options {
	env := map[string]string{"HOME": "/home/glm", "STUB_PORT": "8101"}
	return Options{
		Executable: "/usr/local/bin/glmctl",
		LookupEnv: func(name string) (string, bool) {
			v, ok := env[name]
			return v, ok
		},
	}
}

// parseFixture parses a testdata file under its base name, so messages read
// "invalid-x.hcl:LINE:COL: …" wherever the test runs.
func parseFixture(tb testing.TB, path string) (*Config, error) {
	tb.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return ParseWithOptions(src, filepath.Base(path), fixtureOptions())
}

// TestInvalidFixtures checks every testdata/invalid-*.hcl against the exact
// text in its .err file. GLMCTL_UPDATE_GOLDEN=1 rewrites the .err files.
func TestInvalidFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdataDir, "invalid-*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 12 {
		t.Fatalf("found %d invalid fixtures, want at least 12", len(files))
	}
	update := os.Getenv("GLMCTL_UPDATE_GOLDEN") == "1"
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := parseFixture(t, path)
			if err == nil {
				t.Fatalf("parsed without error: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("got a config along with the error")
			}
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error is %T, want Problems: %v", err, err)
			}
			got := err.Error() + "\n"
			if update {
				if err := os.WriteFile(path+".err", []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path + ".err")
			if err != nil {
				t.Fatalf("read expected output: %v (GLMCTL_UPDATE_GOLDEN=1 writes it)", err)
			}
			if got != string(want) {
				t.Errorf("error output differs\n--- got\n%s--- want\n%s", got, want)
			}
			for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
				if !strings.HasPrefix(line, filepath.Base(path)+":") {
					t.Errorf("line %q does not start with FILE:LINE:COL", line)
				}
			}
		})
	}
}

// TestValidFixtures checks that every testdata/valid-*.hcl loads.
func TestValidFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdataDir, "valid-*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no valid fixtures found")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if _, err := parseFixture(t, path); err != nil {
				t.Fatalf("unexpected problems:\n%v", err)
			}
		})
	}
}

// TestAllProblemsAtOnce checks that one file with many mistakes reports
// each of them, in file order, with its position.
func TestAllProblemsAtOnce(t *testing.T) {
	_, err := parseFixture(t, filepath.Join(testdataDir, "invalid-many.hcl"))
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("got %v, want Problems", err)
	}
	want := []struct {
		line int
		text string
	}{
		{3, `invalid level "verbose"`},
		{7, `invalid listen "localhost"`},
		{12, `invalid duration "90" for start_secs`},
		{13, `gpus lists GPU 0 twice`},
		{14, `depends on "db", which is not defined`},
		{15, `health needs exactly one of http, tcp or exec`},
		{20, `is not on loopback`},
		{22, `invalid size "lots" for max_body`},
		{26, `invalid fsync "sometimes"`},
		{27, `unknown attribute "colour" in audit`},
	}
	if len(probs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(probs), len(want), err)
	}
	for i, w := range want {
		p := probs[i]
		if p.Line != w.line || !strings.Contains(p.Message, w.text) || p.Column < 1 {
			t.Errorf("problem %d = %q, want line %d containing %q", i, p.Error(), w.line, w.text)
		}
	}
}

// TestWarnings checks that likely mistakes that still work load, with
// warnings in file order.
func TestWarnings(t *testing.T) {
	cfg, err := parseFixture(t, filepath.Join(testdataDir, "warn-only.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	want := `warn-only.hcl:8:17: program "ui" waits for "vllm", which has no health block: it counts as ready 1s after it starts, loaded or not; add a health block to "vllm"
warn-only.hcl:9:3: health timeout 5s is not shorter than interval 5s: make timeout shorter so probes do not overlap
warn-only.hcl:16:1: no audit block: requests through the guard are not recorded; add audit { path = "/var/log/glmctl/audit.log" }
warn-only.hcl:17:14: guard upstream "http://127.0.0.1:8001" is a TCP port: any local user can reach the model there, around the guard; run vLLM with --uds in a directory only glmctl and vLLM's user can enter, and write upstream = "unix:///run/glmctl/vllm/vllm.sock"
warn-only.hcl:18:14: guard program "vllm" has no health block: the guard opens 1s after it starts, loaded or not; add a health block to "vllm"
warn-only.hcl:22:12: metrics listen "0.0.0.0:9400" is reachable beyond this machine without a bearer token: /metrics names keys and models; listen on 127.0.0.1 or set bearer_token_file`
	if got := cfg.Warnings.Error(); got != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, want)
	}
	clean, err := parseFixture(t, filepath.Join(testdataDir, "valid-full.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(clean.Warnings) != 0 {
		t.Errorf("valid-full.hcl has warnings:\n%v", clean.Warnings)
	}
}

// FuzzParse checks that no input makes Parse panic, and that every failure
// is a Problems list whose lines all carry the file name.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdataDir, "*.hcl"))
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := ParseWithOptions(src, "fuzz.hcl", fixtureOptions())
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var probs Problems
		if !errors.As(err, &probs) || len(probs) == 0 {
			t.Fatalf("error %T %v is not a Problems list", err, err)
		}
		for _, p := range probs {
			if p.Filename != "fuzz.hcl" || p.Message == "" {
				t.Fatalf("bad problem %+v", p)
			}
		}
	})
}
