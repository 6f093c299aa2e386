package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/daemon"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "run the daemon in the foreground (what systemd runs)",
		Description: "Opens the audit log, the control socket and the listeners, then starts the programs in\n" +
			"dependency order. SIGTERM/SIGINT stop everything gracefully; SIGHUP reloads; SIGUSR1 reopens the audit log and the programs' log files.\n" +
			"Exit: 0 clean stop, 1 runtime failure, 2 bad config or usage.",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return exit(2, fmt.Errorf("up takes no arguments, got %q", c.Args().Slice()))
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log)
			reload := func() (*config.Config, error) {
				if cfg.Path == "" {
					return nil, errors.New("the embedded demo config cannot be reloaded from a file")
				}
				return config.Load(cfg.Path)
			}
			if _, demo := configSource(c); demo {
				reload = nil
				if err := prepareDemo(cfg, logger); err != nil {
					return exit(1, err)
				}
			}
			d, err := daemon.New(cfg, daemon.Options{Logger: logger, Reload: reload, Version: version})
			if err != nil {
				var ps config.Problems
				if errors.As(err, &ps) {
					return exit(2, err) // what the config names is wrong: a bad config, at file:line:col
				}
				return exit(1, err)
			}
			if err := d.Run(c.Context); err != nil {
				return exit(1, err)
			}
			return nil
		},
	}
}

// newLogger builds glmctl's own logger from the log block.
func newLogger(l config.Log) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "glmctl",
		Level:      hclog.LevelFromString(l.Level),
		JSONFormat: l.Format == "json",
		Output:     os.Stderr,
		TimeFormat: "2006-01-02T15:04:05.000Z0700",
	})
}
