package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
)

// fuzzOptions are fixed Options for FuzzImport: deterministic keys and time.
func fuzzOptions() Options {
	return Options{
		KeysPath:   "/srv/glmctl-import/api_keys.json",
		UIKeyPath:  "/srv/glmctl-import/ui.key",
		LimitsPath: "/etc/vllm/rate_limits.json",
		NewSecret:  fakeSecrets(),
		Now:        func() time.Time { return time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC) },
	}
}

// FuzzImport: `glmctl import supervisor` on any INI input either refuses it
// with an error or writes HCL that internal/config loads (every value it carried
// over escaped, every note a comment), and a keys file that keys.Parse
// reads. Seeds: testdata/fuzz/FuzzImport plus the tutorial's file.
func FuzzImport(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "tutorial", "glm47flash.conf")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		res, err := Supervisor(src, "fuzz.conf", fuzzOptions())
		if err != nil {
			if res != nil {
				t.Fatal("an error with a result")
			}
			return
		}
		if !utf8.Valid(res.HCL) {
			t.Fatalf("the HCL is not UTF-8:\n%q", res.HCL)
		}
		cfg, err := config.Parse(res.HCL, "imported.hcl")
		if err != nil {
			t.Fatalf("the imported config does not load:\n%v\n--- input:\n%q\n--- HCL:\n%s", err, src, res.HCL)
		}
		if len(cfg.Programs) == 0 {
			t.Fatalf("no program converted:\n%s", res.HCL)
		}
		kb, err := res.Keys.Marshal()
		if err != nil {
			t.Fatalf("the keys file does not marshal: %v", err)
		}
		if _, _, err := keys.Parse(kb); err != nil {
			t.Fatalf("the keys file does not parse: %v\n%s", err, kb)
		}
	})
}

// TestImportEscapesWhatHCLRejects: strconv.Quote's \a, \x01 and \v are not
// HCL escapes; values holding control characters, invalid UTF-8, template
// sequences or quotes come out as HCL that reads back to the same strings
// (invalid UTF-8 as U+FFFD), and notes quoting them stay comments.
func TestImportEscapesWhatHCLRejects(t *testing.T) {
	weird := "a\x07b\x01c\vd${e}%{f}\"g\\h\xffi"
	src := "[program:x]\ncommand=/bin/echo '" + weird + "'\ndirectory=/srv/" + weird + "\nenvironment=K='" + weird + "'\nnumprocs=" + weird + "\n"
	res, err := Supervisor([]byte(src), "weird.conf", fuzzOptions())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(res.HCL, "weird.hcl")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.HCL)
	}
	p := cfg.Programs[0]
	want := strings.ToValidUTF8(weird, "\uFFFD")
	if got := p.Command[len(p.Command)-1]; got != want {
		t.Errorf("command arg %q, want %q", got, want)
	}
	if p.Directory != "/srv/"+want || p.Env["K"] != want {
		t.Errorf("directory %q, env %q", p.Directory, p.Env["K"])
	}
	if !strings.Contains(string(res.HCL), `numprocs=a\ab\x01c\vd${e}%{f}"g\h\xffi`) {
		t.Errorf("the note does not show the dropped setting escaped:\n%s", res.HCL)
	}
}
