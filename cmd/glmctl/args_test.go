package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/control"
)

func TestReorderArgs(t *testing.T) {
	app := &cli.App{
		Flags: globalFlags(),
		Commands: []*cli.Command{
			{Name: "keys", Subcommands: []*cli.Command{{Name: "new", Flags: []cli.Flag{
				&cli.StringFlag{Name: "role"}, &cli.BoolFlag{Name: "json"},
			}}}},
			{Name: "status", Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}}},
			{Name: "logs", Flags: []cli.Flag{
				&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}}, &cli.IntFlag{Name: "lines", Aliases: []string{"n"}},
			}},
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
		{"glmctl logs vllm -n 20 -f", "glmctl logs -n 20 -f vllm"},
		{"glmctl logs vllm -fn 20", "glmctl logs -fn 20 vllm"},
		{"glmctl logs vllm -nf", "glmctl logs -nf vllm"},
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
	for sec, want := range map[int64]string{0: "0:00:00", 61: "0:01:01", 3723: "1:02:03", 90061: "1 days, 1:01:01"} {
		if got := formatUptime(sec); got != want {
			t.Errorf("formatUptime(%v) = %q, want %q", sec, got, want)
		}
	}
}

func TestStatusExitCodes(t *testing.T) {
	code := func(err error) int {
		var ee *exitError
		if !errors.As(err, &ee) {
			return -1
		}
		return ee.code
	}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&control.RemoteError{Status: 404, Message: `no such program: "x"`}, 1},
		{fmt.Errorf("%w: dial", control.ErrUnreachable), 4},
		{fmt.Errorf("get status: %w", context.DeadlineExceeded), 4},
		{&control.RemoteError{Status: 500, Message: "boom"}, 1},
	} {
		if got := code(statusErr(tc.err)); got != tc.want {
			t.Errorf("statusErr(%v) exits %d, want %d", tc.err, got, tc.want)
		}
	}
}
