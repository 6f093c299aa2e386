package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/control"
)

// actionCommand is start, stop or restart.
func actionCommand(action, usage string) *cli.Command {
	return &cli.Command{
		Name:        action,
		Usage:       usage,
		ArgsUsage:   "NAME…|all",
		Description: "Exit: 0 done, 1 failed, 4 daemon unreachable.",
		Flags:       []cli.Flag{&cli.BoolFlag{Name: "no-wait", Usage: "return once the daemon accepted the command"}},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return exit(2, fmt.Errorf("%s needs program names or all", action))
			}
			cl, err := controlClient(c)
			if err != nil {
				return err
			}
			names := c.Args().Slice()
			if err := cl.Action(c.Context, action, !c.Bool("no-wait"), names...); err != nil {
				return controlErr(err)
			}
			if !c.Bool("no-wait") {
				fmt.Fprintf(c.App.Writer, "%s: %s done\n", joinNames(names), action)
			}
			return nil
		},
	}
}

func joinNames(n []string) string {
	s := ""
	for i, x := range n {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print a program's captured output",
		ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new lines"},
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Value: 100, Usage: "how many recent lines"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return exit(2, errors.New("logs needs exactly one program name"))
			}
			cl, err := controlClient(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(c.Context)
			defer cancel()
			return controlErr(cl.Logs(ctx, c.App.Writer, c.Args().First(), c.Int("lines"), c.Bool("follow")))
		},
	}
}

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:        "reload",
		Usage:       "re-read the config: changed programs restart, removed stop, added start",
		Description: "An invalid config is rejected and the running one kept. Exit: 0 reloaded, 1 rejected, 4 unreachable.",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return exit(2, fmt.Errorf("reload takes no arguments, got %q", c.Args().Slice()))
			}
			err := controlCall(c, "reload", nil, nil)
			var re *control.RemoteError
			if errors.As(err, &re) {
				return exit(1, fmt.Errorf("reload rejected; the daemon keeps running its current config:\n%s", re.Message))
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, "reloaded")
			return nil
		},
	}
}
