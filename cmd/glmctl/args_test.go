package main

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReorderArgs(t *testing.T) {
	app := &cli.App{
		Flags: globalFlags(),
		Commands: []*cli.Command{
			{Name: "keys", Subcommands: []*cli.Command{{Name: "new", Flags: []cli.Flag{
				&cli.StringFlag{Name: "role"}, &cli.BoolFlag{Name: "json"},
			}}}},
			{Name: "status", Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}}},
		},
	}
	for _, c := range app.Commands {
		addGlobalFlags(c)
	}
	tests := []struct{ in, want string }{
		{"glmctl keys new bob --role admin", "glmctl keys new --role admin bob"},
		{"glmctl keys new --role admin bob", "glmctl keys new --role admin bob"},
		{"glmctl status vllm --json -c x.hcl", "glmctl status --json -c x.hcl vllm"},
		{"glmctl -c x.hcl status vllm ui", "glmctl -c x.hcl status vllm ui"},
		{"glmctl keys new bob --role=admin --json", "glmctl keys new --role=admin --json bob"},
		{"glmctl keys new bob -- --role", "glmctl keys new bob -- --role"},
		{"glmctl unknown a --b", "glmctl unknown a --b"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := strings.Join(reorderArgs(app, strings.Fields(tt.in)), " ")
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestFormatUptime(t *testing.T) {
	for sec, want := range map[float64]string{0: "0:00:00", 61: "0:01:01", 3723: "1:02:03", 90061: "1 days, 1:01:01"} {
		if got := formatUptime(sec); got != want {
			t.Errorf("formatUptime(%v) = %q, want %q", sec, got, want)
		}
	}
}
