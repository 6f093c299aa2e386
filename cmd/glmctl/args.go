package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs moves flags that follow positional arguments in front of them,
// so `keys new bob --role admin` parses like `keys new --role admin bob`
// (urfave/cli v2 stops parsing flags at the first positional argument).
// Everything after a literal "--" stays as it is.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	// Global flags before the command, then the command path.
	flags := app.Flags
	cmds := app.Commands
	var leaf *cli.Command
	for len(rest) > 0 {
		a := rest[0]
		if strings.HasPrefix(a, "-") && a != "-" && a != "--" {
			n := flagArity(flags, a)
			take := min(1+n, len(rest))
			out = append(out, rest[:take]...)
			rest = rest[take:]
			continue
		}
		c := findCommand(cmds, a)
		if c == nil {
			break
		}
		out = append(out, a)
		rest = rest[1:]
		leaf = c
		flags = c.Flags
		cmds = c.Subcommands
		if c.SkipFlagParsing {
			return append(out, rest...)
		}
	}
	if leaf == nil {
		return append(out, rest...)
	}
	var fl, pos []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			n := flagArity(flags, a)
			fl = append(fl, a)
			if n == 1 && i+1 < len(rest) {
				fl = append(fl, rest[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	out = append(out, fl...)
	return append(out, pos...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// flagArity is 1 when the flag token a takes the next argument as its value.
// Combined short options ("-fn 20", the app handles short options) take
// one when their last letter does.
func flagArity(flags []cli.Flag, a string) int {
	if strings.Contains(a, "=") {
		return 0
	}
	name := strings.TrimLeft(a, "-")
	if n, ok := arityOf(flags, name); ok {
		return n
	}
	if !strings.HasPrefix(a, "--") && len(name) > 1 {
		if n, ok := arityOf(flags, name[len(name)-1:]); ok {
			return n
		}
	}
	return 0
}

// arityOf is 1 for a flag named name that takes a value, 0 for a boolean
// one; ok is false when no flag has that name.
func arityOf(flags []cli.Flag, name string) (n int, ok bool) {
	for _, f := range flags {
		for _, fn := range f.Names() {
			if fn != name {
				continue
			}
			if bf, isBool := f.(*cli.BoolFlag); isBool && bf != nil {
				return 0, true
			}
			return 1, true
		}
	}
	return 0, false
}
