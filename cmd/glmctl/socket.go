package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/urfave/cli/v2"
	"github.com/zclconf/go-cty/cty"

	examples "github.com/glmctl/glmctl/hcl"
	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/control"
)

// socketEnv names the environment variable --socket defaults to.
const socketEnv = "GLMCTL_SOCKET"

// controlClient returns a client for the daemon's control socket.
func controlClient(c *cli.Context) (*control.Client, error) {
	path, err := socketPath(c)
	if err != nil {
		return nil, err
	}
	return control.NewClient(path), nil
}

// socketPath finds the control socket: --socket or $GLMCTL_SOCKET, else the
// config's control.socket. The commands that only talk to the daemon
// (status, start, stop, restart, logs, reload, audit reopen) must keep
// working while the file on disk is broken — that is when an operator needs
// them most — so an invalid config is read leniently for just that value,
// with a warning, and a missing control block means the default socket.
func socketPath(c *cli.Context) (string, error) {
	for _, l := range c.Lineage() {
		if l.IsSet("socket") && l.String("socket") != "" {
			return l.String("socket"), nil
		}
	}
	path, demo := configSource(c)
	if demo {
		cfg, err := config.Parse(examples.Demo(), path)
		if err != nil {
			return "", exit(1, err) // the embedded demo always parses
		}
		return cfg.Control.Socket, nil
	}
	cfg, err := config.Load(path)
	if err == nil {
		return cfg.Control.Socket, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return "", exit(2, fmt.Errorf("%w\nTry: glmctl -c FILE …, GLMCTL_CONFIG=FILE, --socket PATH (or %s) for the control socket alone, or --demo", err, socketEnv))
	}
	sock := config.DefaultControlSocket
	first := err.Error()
	var probs config.Problems
	if errors.As(err, &probs) && len(probs) > 0 {
		first = probs[0].Error()
	}
	if src, rerr := os.ReadFile(path); rerr == nil {
		if s, ok := lenientSocket(src, path); ok {
			sock = s
		}
	}
	n := ""
	if len(probs) > 1 {
		n = fmt.Sprintf(" (and %d more: glmctl check)", len(probs)-1)
	}
	fmt.Fprintf(c.App.ErrWriter, "warning: the config on disk has errors (the daemon keeps running the config it loaded; a reload, or a restart of glmctl, would fail):\n  %s%s\nusing control socket %s\n", first, n, sock)
	return sock, nil
}

// lenientSocket reads control { socket = "…" } from a config that may not
// parse or validate: first from whatever HCL can make of the whole file,
// then from the control block alone. Only a constant string counts.
func lenientSocket(src []byte, filename string) (string, bool) {
	if s, ok := socketIn(src, filename, hcl.InitialPos); ok {
		return s, true
	}
	start, end, ok := controlBlock(src)
	if !ok {
		return "", false
	}
	pos := hcl.InitialPos
	for _, b := range src[:start] {
		pos.Byte++
		if b == '\n' {
			pos.Line++
			pos.Column = 1
		} else {
			pos.Column++
		}
	}
	return socketIn(src[start:end], filename, pos)
}

func socketIn(src []byte, filename string, pos hcl.Pos) (string, bool) {
	f, _ := hclsyntax.ParseConfig(src, filename, pos)
	if f == nil {
		return "", false
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return "", false
	}
	for _, b := range body.Blocks {
		if b.Type != "control" || b.Body == nil {
			continue
		}
		a, ok := b.Body.Attributes["socket"]
		if !ok {
			continue
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || !v.IsKnown() || v.IsNull() || !v.Type().Equals(cty.String) {
			return "", false
		}
		if s := v.AsString(); s != "" {
			return s, true
		}
	}
	return "", false
}

// controlBlock finds the byte range of a top-level `control { … }` block by
// scanning lines: a line starting with "control" and "{", up to the brace
// that closes it (braces inside strings and comments are skipped).
func controlBlock(src []byte) (start, end int, ok bool) {
	lineStart := true
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			lineStart = true
			continue
		}
		if !lineStart {
			continue
		}
		j := i
		for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
			j++
		}
		lineStart = false
		if len(src)-j < len("control") || string(src[j:j+len("control")]) != "control" {
			i = j
			continue
		}
		k := j + len("control")
		for k < len(src) && (src[k] == ' ' || src[k] == '\t') {
			k++
		}
		if k >= len(src) || src[k] != '{' {
			i = k
			continue
		}
		if e, ok := closingBrace(src, k); ok {
			return j, e + 1, true
		}
		return 0, 0, false
	}
	return 0, 0, false
}

// closingBrace returns the index of the brace closing the one at open.
func closingBrace(src []byte, open int) (int, bool) {
	depth := 0
	inStr := false
	for i := open; i < len(src); i++ {
		c := src[i]
		switch {
		case inStr:
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			case '\n':
				return 0, false
			}
		case c == '"':
			inStr = true
		case c == '#' || (c == '/' && i+1 < len(src) && src[i+1] == '/'):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return i, true
			}
		}
	}
	return 0, false
}
