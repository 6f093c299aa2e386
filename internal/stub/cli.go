package stub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// VLLMCommand is the `vllm` command line of the stand-in model server,
// shared by cmd/vllm-stub and `glmctl stub vllm`. Its action returns an
// *ExitError for a simulated crash.
func VLLMCommand() *cli.Command {
	return &cli.Command{
		Name:      "vllm",
		Usage:     "run a stand-in vLLM OpenAI-compatible server",
		UsageText: "vllm [--listen ADDR | --uds PATH] [--model NAME] [--load-time DUR] [--ttft DUR] [--itl DUR] …",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: DefaultVLLMListen, Usage: "TCP `ADDR` to serve on (host:port)"},
			&cli.StringFlag{Name: "host", Usage: "vLLM-style `HOST` (with --port; overrides --listen)", Value: "127.0.0.1"},
			&cli.IntFlag{Name: "port", Usage: "vLLM-style `PORT` (overrides --listen)"},
			&cli.StringFlag{Name: "uds", Usage: "serve on the unix socket `PATH` instead of TCP (a stale socket file is removed)"},
			&cli.StringFlag{Name: "model", Aliases: []string{"served-model-name"}, Value: DefaultModel, Usage: "served model `NAME`"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"VLLM_API_KEY"}, Usage: "require this Bearer `KEY` on /v1 routes only, like vLLM"},
			&cli.DurationFlag{Name: "load-time", Usage: "slow start: nothing listens (connection refused) for `DUR`"},
			&cli.DurationFlag{Name: "ttft", Usage: "time to first token `DUR`"},
			&cli.DurationFlag{Name: "itl", Usage: "inter-token latency `DUR`"},
			&cli.IntFlag{Name: "max-model-len", Value: DefaultMaxModelLen, Usage: "context length `N` (prompt + max_tokens)"},
			&cli.IntFlag{Name: "reply-tokens", Value: DefaultReplyTokens, Usage: "reply length `N` in tokens when max_tokens does not cut it"},
			&cli.IntFlag{Name: "fail-after", Usage: "engine dies after `N` requests: /health 503, model routes 500 (0: never)"},
			&cli.DurationFlag{Name: "exit-after", Usage: "crash: exit `DUR` after start with --exit-code"},
			&cli.IntFlag{Name: "exit-code", Usage: "exit `CODE` of --exit-after (vLLM exits 0 on engine death)"},
			&cli.StringFlag{Name: "events-file", Usage: "append lifecycle events (start, ready, crash, stop) with their time to `FILE`"},
			&cli.IntFlag{Name: "workers", Usage: "build vLLM's process tree: an engine process with `N` worker processes"},
			&cli.BoolFlag{Name: "ignore-term", Usage: "ignore SIGTERM (only SIGINT or SIGKILL stop it)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log `LEVEL` (debug logs health probes)"},
		},
		Action: func(c *cli.Context) error {
			if role := childRole(); role != "" {
				return runChild(c.Context, role, newLogger("vllm-stub", c.String("log-level")))
			}
			listen := c.String("listen")
			if c.IsSet("port") {
				listen = net.JoinHostPort(c.String("host"), strconv.Itoa(c.Int("port")))
			}
			ctx, stop := signalContext(c.Context, c.Bool("ignore-term"))
			defer stop()
			v := NewVLLM(VLLMOptions{
				Listen:      listen,
				UDS:         c.String("uds"),
				Model:       c.String("model"),
				APIKey:      c.String("api-key"),
				LoadTime:    c.Duration("load-time"),
				TTFT:        c.Duration("ttft"),
				ITL:         c.Duration("itl"),
				MaxModelLen: c.Int("max-model-len"),
				ReplyTokens: c.Int("reply-tokens"),
				FailAfter:   c.Int("fail-after"),
				ExitAfter:   c.Duration("exit-after"),
				ExitCode:    c.Int("exit-code"),
				EventsFile:  c.String("events-file"),
				Workers:     c.Int("workers"),
				Logger:      newLogger("vllm-stub", c.String("log-level")),
			})
			return v.Run(ctx)
		},
	}
}

// WebUICommand is the `webui` command line of the stand-in chat UI, shared
// by cmd/webui-stub and `glmctl stub webui`. The key comes from
// --api-key-file, else $OPENAI_API_KEY; it is never logged.
func WebUICommand() *cli.Command {
	return &cli.Command{
		Name:      "webui",
		Usage:     "run a stand-in chat web UI",
		UsageText: "webui [--listen ADDR] [--api-base URL] [--api-key-file FILE]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: DefaultWebUIListen, Usage: "TCP `ADDR` to serve on"},
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "`HOST` (with --port; overrides --listen)"},
			&cli.IntFlag{Name: "port", Usage: "`PORT` (overrides --listen, like the tutorial's webui.py)"},
			&cli.StringFlag{Name: "api-base", Value: DefaultAPIBase, EnvVars: []string{"OPENAI_BASE_URL"}, Usage: "OpenAI-compatible base `URL`, with /v1"},
			&cli.StringFlag{Name: "api-key-file", EnvVars: []string{"OPENAI_API_KEY_FILE"}, Usage: "`FILE` holding the API key (re-read on every chat; else $OPENAI_API_KEY)"},
			&cli.StringFlag{Name: "model", Value: DefaultModel, Usage: "model `NAME` to ask for"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log `LEVEL`"},
		},
		Action: func(c *cli.Context) error {
			listen := c.String("listen")
			if c.IsSet("port") {
				listen = net.JoinHostPort(c.String("host"), strconv.Itoa(c.Int("port")))
			}
			opts := WebUIOptions{
				Listen:     listen,
				APIBase:    c.String("api-base"),
				APIKeyFile: c.String("api-key-file"),
				Model:      c.String("model"),
				Logger:     newLogger("webui-stub", c.String("log-level")),
			}
			if opts.APIKeyFile == "" {
				opts.APIKey = os.Getenv("OPENAI_API_KEY")
			}
			if opts.APIKeyFile == "" && opts.APIKey == "" {
				opts.Logger.Warn("no API key: set --api-key-file or OPENAI_API_KEY; chats go out without Authorization")
			}
			ctx, stop := signalContext(c.Context, false)
			defer stop()
			return NewWebUI(opts).Run(ctx)
		},
	}
}

// RunApp runs cmd as a standalone program named name and returns the exit
// code: an *ExitError's code, 1 (after printing "Error: …") for other
// errors, 0 otherwise.
func RunApp(name string, cmd *cli.Command, args []string) int {
	app := &cli.App{
		Name:            name,
		Usage:           cmd.Usage,
		UsageText:       cmd.UsageText,
		Flags:           cmd.Flags,
		Action:          cmd.Action,
		HideHelpCommand: true,
	}
	err := app.Run(args)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	return 1
}

// signalContext ends on SIGINT and, unless ignoreTerm, SIGTERM; with
// ignoreTerm SIGTERM is ignored altogether (for stop-escalation tests).
func signalContext(parent context.Context, ignoreTerm bool) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	if ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
		return signal.NotifyContext(parent, os.Interrupt)
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// newLogger logs to stderr at level (info when unknown).
func newLogger(name, level string) hclog.Logger {
	l := hclog.LevelFromString(level)
	if l == hclog.NoLevel {
		l = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: l, Output: os.Stderr})
}
