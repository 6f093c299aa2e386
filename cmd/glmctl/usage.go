package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/config"
)

// Usage errors — an unknown command or flag, a missing or extra argument —
// exit 2 everywhere, with a "did you mean" when a name is close to one that
// exists. Exit 3 is status's "some programs are not running" and must never
// mean a typo (urfave/cli's own "No help topic" exits 3).

// usageKey is where CommandNotFound leaves its error in App.Metadata:
// urfave/cli calls that hook without a way to return one.
const usageKey = "glmctl.usage-error"

// usageError maps flag-parsing errors to exit code 2, suggesting the nearest
// flag of the command for an unknown one.
func usageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		msg = "unknown flag " + dashed(name)
		if s := config.Closest(name, flagNames(c)); s != "" {
			msg += ": did you mean " + dashed(s) + "?"
		}
	}
	return exit(2, fmt.Errorf("%s\nTry: %s --help", msg, commandPath(c)))
}

// groupAction is the Action of the app and of every command that only
// groups subcommands: without arguments the app shows its help and a
// group is a usage error; an argument is an unknown command.
func groupAction(c *cli.Context) error {
	subs, path := c.App.Commands, "glmctl"
	if cmd := c.Command; cmd != nil && cmd.Name != "" && cmd.Name != c.App.Name {
		subs, path = cmd.Subcommands, commandPath(c)
	}
	if c.NArg() == 0 {
		if path == "glmctl" {
			return cli.ShowAppHelp(c)
		}
		return exit(2, fmt.Errorf("%s needs a command: %s\nTry: %s --help", path, strings.Join(visibleNames(subs), ", "), path))
	}
	return unknownCommand(path, c.Args().First(), subs)
}

// commandNotFound handles `glmctl help NAME` for an unknown NAME.
func commandNotFound(c *cli.Context, name string) {
	subs, path := c.App.Commands, "glmctl"
	if cmd := c.Command; cmd != nil && cmd.Name != "" && cmd.Name != c.App.Name && cmd.Name != "help" {
		subs, path = cmd.Subcommands, commandPath(c)
	}
	c.App.Metadata[usageKey] = unknownCommand(path, name, subs)
}

func unknownCommand(path, name string, subs []*cli.Command) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, path)
	if s := config.Closest(name, visibleNames(subs)); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	}
	return exit(2, fmt.Errorf("%s\nTry: %s --help", msg, path))
}

// commandPath is "glmctl" followed by the names of the commands in c.
func commandPath(c *cli.Context) string {
	var names []string
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" && l.Command.Name != c.App.Name {
			names = append(names, l.Command.Name)
		}
	}
	out := "glmctl"
	for i := len(names) - 1; i >= 0; i-- {
		if i < len(names)-1 && names[i] == names[i+1] {
			continue // a context may repeat its parent's command
		}
		out += " " + names[i]
	}
	return out
}

func visibleNames(cmds []*cli.Command) []string {
	var out []string
	for _, c := range cmds {
		if !c.Hidden && c.Name != "help" {
			out = append(out, c.Name)
		}
	}
	return out
}

// flagNames lists the flags of the command being parsed (the app's at the top).
func flagNames(c *cli.Context) []string {
	flags := c.App.Flags
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		flags = c.Command.Flags
	}
	var out []string
	for _, f := range flags {
		out = append(out, f.Names()...)
	}
	return out
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
