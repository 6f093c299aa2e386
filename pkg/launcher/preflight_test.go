package launcher

import (
	"errors"
	"strings"
	"testing"

	"github.com/glmctl/glmctl/internal/config"
)

// TestCheckProgramIdentity: only root can start a program as a user, so a
// glmctl that is not root refuses a program with user at load rather than
// letting every spawn fail with EPERM.
func TestCheckProgramIdentity(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	p := &config.Program{Name: "vllm", Command: []string{"/bin/sh"}, User: "root"}
	geteuid = func() int { return 1000 }
	errs := CheckProgram(p)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `program "vllm" runs as user "root", and only root can start a program as a user (glmctl runs as uid 1000)`) {
		t.Fatalf("as uid 1000: %v", errs)
	}
	var se *config.SettingError
	if !errors.As(errs[0], &se) || se.Path != "program.vllm.user" {
		t.Fatalf("not placed at program.vllm.user: %#v", errs[0])
	}
	geteuid = func() int { return 0 }
	if errs := CheckProgram(p); len(errs) != 0 {
		t.Fatalf("as root: %v", errs)
	}
}
