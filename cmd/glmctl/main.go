// Command glmctl runs and controls a self-hosted LLM box: it supervises the
// model server and the web UI, guards the API, and keeps an audit trail.
//
// main is thin: commands return errors (wrapped with exit codes where the
// contract fixes one) and run prints them once, as "Error: …".
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/pkg/launcher"
)

// Set by the linker (-X main.version=… -X main.commit=…).
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	// A program's keeper is a re-exec of this binary; it never returns.
	launcher.RunKeeperIfRequested()
	os.Exit(run(os.Args))
}

// exitError carries an exit code chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// exit wraps err with an exit code; a nil err with a non-zero code exits
// silently with that code.
func exit(code int, err error) error { return &exitError{code: code, err: err} }

func run(args []string) int {
	app := newApp()
	err := app.Run(reorderArgs(app, args))
	if err == nil {
		if ue, ok := app.Metadata[usageKey].(error); ok {
			err = ue
		}
	}
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ee):
		code = ee.code
		if ee.err == nil {
			return code
		}
	case errors.As(err, &ec):
		code = ec.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	return code
}

func newApp() *cli.App {
	app := &cli.App{
		Name:                   "glmctl",
		Usage:                  "supervise, guard and audit a self-hosted LLM box",
		Version:                version,
		UseShortOptionHandling: true,
		HideVersion:            true,
		Flags:                  globalFlags(),
		Commands: []*cli.Command{
			upCommand(),
			statusCommand(),
			actionCommand("start", "start programs and wait until they are RUNNING"),
			actionCommand("stop", "stop programs and wait until they are stopped"),
			actionCommand("restart", "restart programs and wait until they are RUNNING"),
			logsCommand(),
			reloadCommand(),
			checkCommand(),
			keysCommand(),
			importCommand(),
			auditCommand(),
			gpuCommand(),
			versionCommand(),
			stubCommand(),
		},
		Action:          groupAction,
		OnUsageError:    usageError,
		CommandNotFound: commandNotFound,
		// Only run picks exit codes: urfave/cli must never call os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
		Metadata:       map[string]any{},
	}
	// -c/--config and --demo are accepted before or after the command.
	for _, c := range app.Commands {
		addGlobalFlags(c)
	}
	return app
}

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "config `FILE` (default $GLMCTL_CONFIG, then /etc/glmctl/glmctl.hcl)"},
		&cli.BoolFlag{Name: "demo", Usage: "use the embedded demo config (stand-in model server and web UI on loopback)"},
		&cli.StringFlag{Name: "socket", EnvVars: []string{socketEnv}, Usage: "the daemon's control socket `PATH` (default: the config's control.socket); the config is then not read by status, start, stop, restart, logs, reload, audit reopen"},
	}
}

func addGlobalFlags(c *cli.Command) {
	have := map[string]bool{}
	for _, f := range c.Flags {
		for _, n := range f.Names() {
			have[n] = true
		}
	}
	for _, f := range globalFlags() {
		if !have[f.Names()[0]] {
			c.Flags = append(c.Flags, f)
		}
	}
	if c.OnUsageError == nil {
		c.OnUsageError = usageError
	}
	if len(c.Subcommands) > 0 && c.Action == nil {
		c.Action = groupAction
	}
	for _, sc := range c.Subcommands {
		addGlobalFlags(sc)
	}
}
