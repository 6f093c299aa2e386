package migrate

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/import")

// fakeSecrets returns deterministic keys for golden output.
func fakeSecrets() func() (string, error) {
	n := 0
	return func() (string, error) {
		n++
		return fmt.Sprintf("sk-test%038d", n), nil
	}
}

func tutorialOptions(t *testing.T) (src []byte, opts Options) {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "tutorial")
	src, err := os.ReadFile(filepath.Join(dir, "glm47flash.conf"))
	if err != nil {
		t.Fatal(err)
	}
	oldKeys, err := os.ReadFile(filepath.Join(dir, "api_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	return src, Options{
		KeysPath:    "/srv/glmctl-import/api_keys.json",
		UIKeyPath:   "/srv/glmctl-import/ui.key",
		OldKeys:     oldKeys,
		OldKeysPath: "/etc/vllm/api_keys.json",
		LimitsPath:  "/etc/vllm/rate_limits.json",
		NewSecret:   fakeSecrets(),
		Now:         func() time.Time { return time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC) },
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "import", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/migrate -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./internal/migrate -update to accept):\n%s", name, got)
	}
}

func TestTutorialGolden(t *testing.T) {
	src, opts := tutorialOptions(t)
	res, err := Supervisor(src, "glm47flash.conf", opts)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "glm47flash.hcl", res.HCL)
	kb, err := res.Keys.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "api_keys.json", kb)
	golden(t, "notes.txt", []byte(strings.Join(res.Notes, "\n")+"\n"))

	// The config loads and says what the tutorial meant.
	cfg, err := config.Parse(res.HCL, "glm47flash.hcl")
	if err != nil {
		t.Fatalf("converted config does not load:\n%v", err)
	}
	v := cfg.Program("glm_vllm")
	if v == nil || cfg.Program("glm_ui") == nil || cfg.Guard == nil || cfg.Audit == nil {
		t.Fatalf("config %+v", cfg)
	}
	cmd := strings.Join(v.Command, " ")
	for _, gone := range []string{"--api-key", "--limit", "--log-format", "--log-file", "--log-level", "--host", "--port", "sk-your"} {
		if strings.Contains(cmd, gone) {
			t.Errorf("vLLM command still has %s: %s", gone, cmd)
		}
	}
	for _, kept := range []string{"--tensor-parallel-size 4", "--max-num-seqs 50", "--max-num-batched-tokens 2048", "--uds /run/glmctl/vllm.sock"} {
		if !strings.Contains(cmd, kept) {
			t.Errorf("vLLM command lacks %s: %s", kept, cmd)
		}
	}
	g := cfg.Guard
	if g.Listen != "0.0.0.0:8000" || g.Upstream != "unix:///run/glmctl/vllm.sock" || g.Global == nil || g.Global.RPM != 100 ||
		g.KeysFile != opts.KeysPath || g.LimitsFile != "/etc/vllm/rate_limits.json" || g.Program != "glm_vllm" {
		t.Errorf("guard %+v", g)
	}
	if cfg.Audit.Path != "/var/log/vllm/audit.log" || cfg.Log.Level != "info" {
		t.Errorf("audit %+v log %+v", cfg.Audit, cfg.Log)
	}
	if len(v.GPUs) != 4 || v.Restart != "always" || v.StartRetries != 3 || v.StopTimeout != 30*time.Second ||
		v.StartTimeout != 30*time.Minute || v.Health == nil || v.Health.UnixSocket != "/run/glmctl/vllm.sock" ||
		v.Log.MaxSize != 50<<20 || v.Log.Keep != 5 {
		t.Errorf("vllm program %+v", v)
	}
	ui := cfg.Program("glm_ui")
	if len(ui.DependsOn) != 1 || ui.DependsOn[0] != "glm_vllm" || ui.Env["OPENAI_API_KEY_FILE"] != opts.UIKeyPath {
		t.Errorf("ui program %+v", ui)
	}

	// Keys: hashed only; every old key, the --api-key key and the UI's open.
	if bytes.Contains(kb, []byte("sk-")) {
		t.Errorf("clear text in the new keys file:\n%s", kb)
	}
	set := keys.NewSet(res.Keys)
	// The tutorial's published placeholder is carried over disabled.
	if _, err := set.Lookup("sk-your-secure-api-key-here", time.Now()); !errors.Is(err, keys.ErrDisabled) {
		t.Errorf("the tutorial's placeholder --api-key must be imported disabled, lookup gave %v", err)
	}
	for secret, name := range map[string]string{
		"sk-abc123def456ghi789jkl012mno345pqr": "user1",
		"sk-678stu901vwx234yza567bcd890efg123": "user2",
		"sk-456hij789klm012nop345qrs678tuv901": "admin",
		res.UIKey:                              "glm_ui-service",
	} {
		k, err := set.Lookup(secret, time.Now())
		if err != nil || k.Name != name {
			t.Errorf("lookup %s: %v %v", name, k, err)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		comment string
	}{
		{`a "b c" 'd e' f\ g`, []string{"a", "b c", "d e", "f g"}, ""},
		{`python -m x --port 8000 # the API port`, []string{"python", "-m", "x", "--port", "8000"}, "# the API port"},
		{`a--b#c "x#y"`, []string{"a--b#c", "x#y"}, ""},
		{`say "a \"q\" b"`, []string{"say", `a "q" b`}, ""},
	} {
		got, comment, err := SplitCommand(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") || comment != tc.comment {
			t.Errorf("SplitCommand(%q) = %q %q %v, want %q %q", tc.in, got, comment, err, tc.want, tc.comment)
		}
	}
	if _, _, err := SplitCommand(`a "b`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestParseEnv(t *testing.T) {
	got, err := ParseEnv(`A="x,y",B=2, C='z'`)
	if err != nil || got["A"] != "x,y" || got["B"] != "2" || got["C"] != "z" || len(got) != 3 {
		t.Errorf("ParseEnv = %v %v", got, err)
	}
	if _, err := ParseEnv(`A`); err == nil {
		t.Error("bad environment accepted")
	}
}

// TestOtherSettings covers what the tutorial's file does not use.
func TestOtherSettings(t *testing.T) {
	src := `[supervisord]
nodaemon=true

[program:llm]
command=vllm serve /models/m --host 127.0.0.1 --port=9000 --api-key k1 k2 --uds /tmp/x.sock  ; inline comment
user=glm
environment=HF_HOME="/srv/hf",A=b
stopsignal=INT
stdout_logfile=NONE
numprocs=1

[program:worker]
command=/bin/sleep 100 # done
autorestart=unexpected
autostart=false
stdout_logfile_maxbytes=1KB
exitcodes=0,2
`
	res, err := Supervisor([]byte(src), "x.conf", Options{KeysPath: "/o/k.json", UIKeyPath: "/o/ui.key", NewSecret: fakeSecrets()})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(res.HCL, "x.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.HCL)
	}
	hcl := string(res.HCL)
	for _, want := range []string{"numprocs=1", "exitcodes=0,2", `comment "# done"`, "[supervisord]"} {
		if !strings.Contains(hcl, want) && !strings.Contains(strings.Join(res.Notes, "\n"), want) {
			t.Errorf("no note about %s:\n%s\n%s", want, hcl, res.Notes)
		}
	}
	if cfg.Guard.Listen != "127.0.0.1:9000" || cfg.Guard.Upstream != "unix:///run/glmctl/vllm.sock" || cfg.Guard.Global != nil {
		t.Errorf("guard %+v", cfg.Guard)
	}
	llm := cfg.Program("llm")
	if llm.User != "glm" || llm.Env["HF_HOME"] != "/srv/hf" || llm.StopSignal != "SIGINT" || llm.Log.Path != "" ||
		strings.Contains(strings.Join(llm.Command, " "), "/tmp/x.sock") || strings.Contains(strings.Join(llm.Command, " "), "k1") {
		t.Errorf("llm %+v", llm)
	}
	w := cfg.Program("worker")
	if w.Restart != "on-failure" || w.Autostart || strings.Join(w.Command, " ") != "/bin/sleep 100" {
		t.Errorf("worker %+v", w)
	}
	if len(res.Keys.Entries) != 2 || res.Keys.Entries[1].Name != ImportedKeyName+"-2" || res.UIKey != "" {
		t.Errorf("keys %+v ui %q", res.Keys.Entries, res.UIKey)
	}
}

// TestCommentedCommand: the tutorial's "# …" comments copied onto the
// command's continued lines are cut before the lines are joined.
func TestCommentedCommand(t *testing.T) {
	src := "[program:v]\n" +
		"command=python3 -m vllm.entrypoints.openai.api_server \\  # 启动\n" +
		"--model /m \\\n" +
		"--api-key \"sk-a#b\" \\ # API密钥\n" +
		"--limit 100 # 限流 \\\n" +
		"--port 8001   # 端口\n" +
		"directory=/srv # not a comment for other keys\n"
	secs, err := ParseINI([]byte(src), "c.conf")
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := secs[0].Get("command")
	if want := `python3 -m vllm.entrypoints.openai.api_server --model /m --api-key "sk-a#b" --limit 100 --port 8001`; cmd.Value != want || !cmd.Joined || len(cmd.Comments) != 4 {
		t.Errorf("command %q (comments %q), want %q", cmd.Value, cmd.Comments, want)
	}
	if d, _ := secs[0].Get("directory"); d.Value != "/srv # not a comment for other keys" {
		t.Errorf("directory %q", d.Value)
	}
	res, err := Supervisor([]byte(src), "c.conf", Options{KeysPath: "/o/k.json", UIKeyPath: "/o/ui.key", NewSecret: fakeSecrets()})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(res.HCL, "c.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.HCL)
	}
	if cfg.Guard.Listen != "0.0.0.0:8001" || cfg.Guard.Global.RPM != 100 || !strings.Contains(string(res.HCL), `comment "# API密钥" dropped`) {
		t.Errorf("guard %+v\n%s", cfg.Guard, res.HCL)
	}
	if k, err := keys.NewSet(res.Keys).Lookup("sk-a#b", time.Now()); err != nil || k.Name != ImportedKeyName {
		t.Errorf("quoted # in the key: %v %v", k, err)
	}
}

func TestIsPlaceholder(t *testing.T) {
	for k, want := range map[string]bool{
		"sk-your-secure-api-key-here": true,
		"sk-changeme":                 true,
		"EXAMPLE-KEY":                 true,
		"sk-therealkey-0123456789":    false,
		"sk-abc123def456ghi789jkl012": false,
	} {
		if got := isPlaceholder(k); got != want {
			t.Errorf("isPlaceholder(%q) = %v, want %v", k, got, want)
		}
	}
}

// TestVLLMKeyFromEnvironment: VLLM_API_KEY in supervisord's environment is
// --api-key by another name. Left in place, vLLM would answer 401 to the
// guard, which never forwards a key: it moves, hashed, to the keys file.
func TestVLLMKeyFromEnvironment(t *testing.T) {
	src := `[program:llm]
command=vllm serve /models/m --port 8000
environment=HF_HOME="/srv/hf",VLLM_API_KEY="sk-from-the-env-0123456789"
`
	res, err := Supervisor([]byte(src), "x.conf", Options{KeysPath: "/o/k.json", UIKeyPath: "/o/ui.key", NewSecret: fakeSecrets()})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(res.HCL, "x.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.HCL)
	}
	if llm := cfg.Program("llm"); llm.Env["VLLM_API_KEY"] != "" || llm.Env["HF_HOME"] != "/srv/hf" {
		t.Errorf("env %v: VLLM_API_KEY must go, the rest stay", llm.Env)
	}
	if strings.Contains(string(res.HCL), "sk-from-the-env") {
		t.Errorf("the key is in the HCL:\n%s", res.HCL)
	}
	if k, err := keys.NewSet(res.Keys).Lookup("sk-from-the-env-0123456789", time.Now()); err != nil || k.Name != ImportedKeyName {
		t.Errorf("the environment's key is not in the new keys file: %v %v", k, err)
	}
}

// TestImportRelativePaths: supervisord resolves a relative directory or
// log file against its own working directory; glmctl wants absolute paths,
// so they are left out with a note, and the result loads.
func TestImportRelativePaths(t *testing.T) {
	src := "[program:ui]\ncommand=/usr/bin/python3 app.py\ndirectory=webui\nstdout_logfile=logs/ui.log\n\n" +
		"[program:vllm]\ncommand=vllm serve m --log-file audit.jsonl\n"
	res, err := Supervisor([]byte(src), "rel.conf", fuzzOptions())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(res.HCL, "rel.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.HCL)
	}
	ui := cfg.Program("ui")
	if ui == nil || ui.Directory != "" || ui.Log.Path != "" {
		t.Fatalf("relative paths carried over: %+v", ui)
	}
	if cfg.Audit == nil || cfg.Audit.Path != "/var/log/glmctl/audit.log" {
		t.Fatalf("audit %+v", cfg.Audit)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, want := range []string{"directory=webui is relative", "stdout_logfile=logs/ui.log is relative", "--log-file audit.jsonl is relative"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}
