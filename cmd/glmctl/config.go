package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	examples "github.com/glmctl/glmctl/hcl"
	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/control"
)

// configSource says where the config comes from: the embedded demo, -c,
// $GLMCTL_CONFIG, or /etc/glmctl/glmctl.hcl, in that order.
func configSource(c *cli.Context) (path string, demo bool) {
	// Every command declares -c and --demo too (so they may follow it); the
	// value is wherever the user set it, before or after the command.
	flag := ""
	for _, l := range c.Lineage() {
		if l.IsSet("demo") && l.Bool("demo") {
			return "demo.hcl (embedded)", true
		}
		if flag == "" && l.IsSet("config") {
			flag = l.String("config")
		}
	}
	return config.Find(flag), false
}

// loadConfig reads and validates the config; a bad config is exit code 2.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path, demo := configSource(c)
	var (
		cfg *config.Config
		err error
	)
	if demo {
		cfg, err = config.Parse(examples.Demo(), path)
	} else {
		cfg, err = config.Load(path)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, exit(2, fmt.Errorf("%w\nTry: glmctl -c FILE …, GLMCTL_CONFIG=FILE, or --demo for the built-in demo", err))
		}
		return nil, exit(2, err)
	}
	return cfg, nil
}

// controlCall sends one control request; daemon unreachable is exit code 4.
func controlCall(c *cli.Context, method string, _ any, _ any) error {
	cl, err := controlClient(c)
	if err != nil {
		return err
	}
	switch method {
	case "audit.reopen":
		ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
		defer cancel()
		err = cl.AuditReopen(ctx)
	case "reload":
		// No deadline: a reload stops changed programs (up to their
		// stop_timeout) before it answers; ^C stops waiting, not the reload.
		err = cl.Reload(c.Context)
	default:
		return fmt.Errorf("unknown control method %q", method)
	}
	return controlErr(err)
}

// controlErr maps an unreachable daemon to exit code 4.
func controlErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, control.ErrUnreachable) {
		return exit(4, err)
	}
	return exit(1, err)
}
