package main

import (
	"strings"
	"testing"

	"github.com/glmctl/glmctl/internal/config"
)

// TestUsageErrors: a typo in a command or flag, or a missing argument, is a
// usage error (exit 2) with a suggestion — never 3, status's "not running".
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"statsu"}, `unknown command "statsu" for "glmctl": did you mean "status"?`},
		{[]string{"help", "statsu"}, `did you mean "status"?`},
		{[]string{"keys", "nwe", "bob"}, `unknown command "nwe" for "glmctl keys": did you mean "new"?`},
		{[]string{"audit", "verfy"}, `did you mean "verify"?`},
		{[]string{"keys"}, "glmctl keys needs a command: new, list, revoke, rotate, policy, hash"},
		{[]string{"zzzzzz"}, `unknown command "zzzzzz"`},
		{[]string{"status", "--jsno"}, "unknown flag --jsno: did you mean --json?"},
		{[]string{"keys", "new", "bob", "--rloe", "admin"}, "unknown flag --rloe: did you mean --role?"},
		{[]string{"logs", "-x"}, "unknown flag -x"},
		{[]string{"start"}, "start needs program names or all"},
		{[]string{"logs"}, "logs needs exactly one program name"},
		{[]string{"keys", "new"}, "takes one NAME"},
		{[]string{"import", "supervisor"}, "takes one FILE"},
		{[]string{"reload", "extra"}, "reload takes no arguments"},
		{[]string{"status", "--socket"}, "flag needs an argument"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := glmctl(t, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "No help topic") {
				t.Errorf("urfave/cli's own message leaked: %q", r.stderr)
			}
		})
	}
	if r := glmctl(t); r.code != 0 || !strings.Contains(r.stdout, "USAGE") {
		t.Errorf("bare glmctl: exit %d, want 0 with the help", r.code)
	}
	if r := glmctl(t, "keys", "--help"); r.code != 0 || !strings.Contains(r.stdout, "rotate") {
		t.Errorf("keys --help: exit %d %q", r.code, r.stdout)
	}
}

func TestClosest(t *testing.T) {
	cands := []string{"status", "start", "stop", "restart", "logs", "reload"}
	for in, want := range map[string]string{"statsu": "status", "stauts": "status", "lgos": "logs", "rld": "", "x": "", "upp": ""} {
		if got := config.Closest(in, cands); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}
