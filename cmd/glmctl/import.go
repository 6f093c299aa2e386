package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/internal/migrate"
	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/guard"
)

// importCommand is `glmctl import supervisor FILE [-o OUT]`.
func importCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "convert another setup into a glmctl config",
		Subcommands: []*cli.Command{{
			Name:      "supervisor",
			Usage:     "convert a supervisord config (the tutorial's glm47flash.conf) into glmctl HCL",
			ArgsUsage: "FILE",
			Description: "HCL goes to stdout (or -o OUT), notes to stderr. New hashed keys go to a new 0600 api_keys.json\n" +
				"beside OUT (default: the current directory), the web UI's service key to ui.key there.\n" +
				"Never writes the -c/GLMCTL_CONFIG path, /etc/vllm or /etc/glmctl.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the HCL to `OUT` instead of stdout"},
				&cli.StringFlag{Name: "keys-from", Value: "/etc/vllm/api_keys.json", Usage: "the tutorial's keys `FILE`, merged (hashed) into the new keys file; missing: skipped"},
				&cli.StringFlag{Name: "limits-file", Value: "/etc/vllm/rate_limits.json", Usage: "limits `FILE` the config references where it is (\"\" for none)"},
				&cli.StringFlag{Name: "logrotate-dir", Value: "/etc/logrotate.d", Usage: "logrotate `DIR` checked for copytruncate on the audit log"},
			},
			Action: importSupervisor,
		}},
	}
}

func importSupervisor(c *cli.Context) error {
	if c.NArg() != 1 {
		return exit(2, errors.New("import supervisor takes one FILE (see --help)"))
	}
	in := c.Args().First()
	src, err := os.ReadFile(in)
	if err != nil {
		return exit(1, fmt.Errorf("read supervisord config: %w", err))
	}
	out := c.String("output")
	dir := "."
	if out != "" {
		dir = filepath.Dir(out)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return exit(1, err)
	}
	keysPath := filepath.Join(dir, "api_keys.json")
	uiKeyPath := filepath.Join(dir, "ui.key")
	targets := []string{keysPath, uiKeyPath}
	if out != "" {
		targets = append(targets, out)
	}
	if err := checkImportTargets(c, targets); err != nil {
		return exit(1, err)
	}

	opts := migrate.Options{KeysPath: keysPath, UIKeyPath: uiKeyPath, LimitsPath: c.String("limits-file")}
	if opts.LimitsPath != "" {
		// The config wants absolute paths (glmctl may start elsewhere).
		if opts.LimitsPath, err = filepath.Abs(opts.LimitsPath); err != nil {
			return exit(1, err)
		}
	}
	var notes []string
	if p := c.String("keys-from"); p != "" {
		b, err := os.ReadFile(p)
		switch {
		case err == nil:
			opts.OldKeys, opts.OldKeysPath = b, p
		case errors.Is(err, fs.ErrNotExist):
			notes = append(notes, fmt.Sprintf("%s not found: no tutorial keys merged (add them with glmctl keys new)", p))
		default:
			return exit(1, fmt.Errorf("read tutorial keys: %w", err))
		}
	}
	if p := opts.LimitsPath; p != "" {
		if _, _, err := guard.ReadLimits(p); err != nil {
			opts.LimitsErr = err
		}
	}
	res, err := migrate.Supervisor(src, in, opts)
	if err != nil {
		return exit(1, err)
	}
	notes = append(notes, res.Notes...)
	// The result must load, or nothing is written.
	name := out
	if name == "" {
		name = "converted.hcl"
	}
	cfg, err := config.Parse(res.HCL, name)
	if err != nil {
		return exit(1, fmt.Errorf("the converted config does not load (a bug in glmctl import; please report it):\n%w", err))
	}
	if cfg.Audit != nil {
		for _, d := range []string{c.String("logrotate-dir"), "/etc/logrotate.conf"} {
			for _, w := range audit.CheckLogrotate(d, cfg.Audit.Path) {
				notes = append(notes, "logrotate: "+w+": remove that rule, glmctl rotates the audit log itself")
			}
		}
	}
	if cfg.Guard != nil {
		notes = append(notes, "an nginx limit_req proxy in front (the tutorial's glm-api site) limits per IP and answers 503: the guard now limits per key with 429; point nginx at "+cfg.Guard.Listen+" without limit_req, or remove it")
	}

	if err := keys.Save(keysPath, res.Keys); err != nil {
		return exit(1, err)
	}
	if res.UIKey != "" {
		if err := writeNew(uiKeyPath, []byte(res.UIKey+"\n"), 0o600); err != nil {
			return exit(1, err)
		}
	}
	if out != "" {
		if err := writeNew(out, res.HCL, 0o644); err != nil {
			return exit(1, err)
		}
	} else if _, err := c.App.Writer.Write(res.HCL); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintf(c.App.ErrWriter, "note: %s\n", n)
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote %s (mode 0600, %d hashed keys)", keysPath, len(res.Keys.Entries))
	if res.UIKey != "" {
		fmt.Fprintf(c.App.ErrWriter, " and %s (mode 0600)", uiKeyPath)
	}
	if out != "" {
		fmt.Fprintf(c.App.ErrWriter, "; config in %s", out)
	}
	fmt.Fprintln(c.App.ErrWriter, "\nnext: review the \"glmctl import:\" comments, then glmctl check -c CONFIG")
	return nil
}

// checkImportTargets refuses to write over anything that exists, the
// running config, or /etc/vllm and /etc/glmctl.
func checkImportTargets(c *cli.Context, targets []string) error {
	var protected []string
	if p, demo := configSource(c); !demo && (c.IsSet("config") || os.Getenv(config.EnvVar) != "") {
		protected = append(protected, resolved(p))
	}
	for _, t := range targets {
		r := resolved(t)
		for _, d := range []string{"/etc/vllm", "/etc/glmctl"} {
			if r == d || strings.HasPrefix(r, d+"/") {
				return fmt.Errorf("refusing to write %s: import never writes under %s; write elsewhere (-o DIR/glmctl.hcl) and review before installing", t, d)
			}
		}
		for _, p := range protected {
			if r == p {
				return fmt.Errorf("refusing to write %s: it is the config in use (-c or %s)", t, config.EnvVar)
			}
		}
		if _, err := os.Lstat(t); err == nil {
			return fmt.Errorf("refusing to overwrite %s: move it away or pick another directory with -o DIR/glmctl.hcl", t)
		}
	}
	return nil
}

// resolved is path made absolute with symlinks of its directory resolved.
func resolved(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if d, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(d, filepath.Base(abs))
	}
	return abs
}

// writeNew creates path (which must not exist) with mode and data, synced.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
