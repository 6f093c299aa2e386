package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/daemon"
	"github.com/glmctl/glmctl/internal/jsonc"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/internal/selfcheck"
	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/guard"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "validate the config, keys and limits files offline, or probe the running service (--live)",
		Description: "Offline: every problem at once with file:line:col (❌), warnings too (⚠): the config, keys and limits\n" +
			"files, and what the config names as glmctl up uses it (TLS pair, token and key files, audit path, each\n" +
			"program's user, directory and command, the policy's rules compiled). Exit: 0 ok, 1 problems, 2 no config.\n" +
			"--live: probes the running guard (auth, a real completion, a 429 on a temporary rpm-1 key, audit,\n" +
			"/metrics, the upstream's exposure); one ✅/❌/⚠ line per check. Without --key (or GLMCTL_KEY) the\n" +
			"completion is asked with a temporary key (rpm 1, expiring in minutes, removed afterwards), which\n" +
			"needs write access to the keys and limits files. A skipped check is not a pass: exit 0 only when\n" +
			"every check passed or was skipped because the config leaves its feature out (no audit or metrics\n" +
			"block, no limits file); --allow-skip accepts the other skips too. Exit: 0 passed, 1 failed or skipped.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "live", Usage: "probe the running service"},
			&cli.StringFlag{Name: "url", Usage: "the guard's root `URL`, without /v1 (default: from guard.listen)"},
			&cli.StringFlag{Name: "key", EnvVars: []string{"GLMCTL_KEY"}, Usage: "a working API `KEY` (default $GLMCTL_KEY)"},
			&cli.BoolFlag{Name: "json", Usage: "with --live: print the results as JSON"},
			&cli.BoolFlag{Name: "allow-skip", Usage: "with --live: exit 0 although checks that could not run here were skipped"},
			&cli.StringFlag{Name: "logrotate-dir", Value: "/etc/logrotate.d", Usage: "logrotate `DIR` checked for copytruncate on the audit log (and /etc/logrotate.conf)"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("live") {
				return checkLive(c)
			}
			return checkOffline(c)
		},
	}
}

// checkOffline validates the config, then the keys and limits files it
// names, and warns about setups that work but are unsafe.
func checkOffline(c *cli.Context) error {
	path, _ := configSource(c)
	w := c.App.Writer
	cfg, err := loadConfig(c)
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintf(w, "❌ %s\n", p.Error())
			}
			return exit(1, fmt.Errorf("%s: %d problem(s)", path, len(probs)))
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return err // the config cannot be found: exit 2, as for every command
		}
		return exit(1, err)
	}
	problems := 0
	bad := func(format string, args ...any) {
		problems++
		fmt.Fprintf(w, "❌ "+format+"\n", args...)
	}
	warn := func(format string, args ...any) { fmt.Fprintf(w, "⚠ "+format+"\n", args...) }
	// What up and reload would refuse beyond the file itself: the policy's
	// rules as the guard compiles them (too large, empty once normalised),
	// and what the settings name (TLS pair, token and key files, audit
	// path, programs' users, directories and commands), each placed at its
	// setting.
	pre, preWarn := daemon.Preflight(cfg)
	for _, p := range pre {
		bad("%s", p.Error())
	}
	if problems == 0 {
		fmt.Fprintf(w, "✅ %s: valid (%d programs)\n", path, len(cfg.Programs))
	}
	printWarnings(w, cfg.Warnings)
	printWarnings(w, preWarn)
	if g := cfg.Guard; g != nil {
		budget, nofile := daemon.FDBudgetHere()
		if err := guard.CheckMaxConnections(g.MaxConnections, budget); err != nil {
			warn("%s", cfg.At("guard.max_connections", "%v — under this shell's open-files limit (hard %d); glmctl up refuses it where its limit is the same (systemd: LimitNOFILE in the unit)", err, nofile).Error())
		}
		checkKeysFile(g.KeysFile, bad, warn, w)
		if g.LimitsFile != "" {
			checkLimitsFile(g.LimitsFile, bad, warn, w)
		}
		checkExposure(cfg, warn)
		// A store whose settings Preflight refused is not dialled (the
		// problem is listed once).
		if g.LimitsStore != "" && guard.ValidateRedisOptions(guard.RedisOptionsFor(g)) == nil {
			checkLimitsStore(c.Context, g, bad, w)
		}
	}
	if a := cfg.Audit; a != nil {
		checkAuditRoom(a, warn)
		for _, d := range []string{c.String("logrotate-dir"), "/etc/logrotate.conf"} {
			for _, m := range audit.CheckLogrotate(d, a.Path) {
				warn("%s", m)
			}
		}
	}
	if problems > 0 {
		return exit(1, fmt.Errorf("%d problem(s) in the files %s names", problems, path))
	}
	return nil
}

func printWarnings(w io.Writer, ws config.Problems) {
	for _, p := range ws {
		fmt.Fprintf(w, "⚠ %s\n", p.Error())
	}
}

// positioned prints each error joined in err as "path:line:col: message".
func positioned(path string, err error, bad func(string, ...any)) {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var je *jsonc.Error
		if errors.As(e, &je) {
			bad("%s:%d:%d: %s", path, je.Line, je.Col, je.Msg)
		} else {
			bad("%s: %v", path, e)
		}
	}
}

func checkKeysFile(path string, bad, warn func(string, ...any), w io.Writer) {
	src, err := os.ReadFile(path)
	if err != nil {
		bad("keys file: %v (the guard refuses every request without it; create it with glmctl keys new NAME)", err)
		return
	}
	f, warns, err := keys.Parse(src)
	for _, kw := range warns {
		warn("%s:%d:%d: %s", path, kw.Line, kw.Col, kw.Msg)
	}
	if err != nil {
		positioned(path, err, bad)
		return
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		warn("%s: mode %v lets other users read it: chmod 600 %s", path, st.Mode().Perm(), path)
	}
	if len(f.Entries) == 0 {
		warn("%s: no keys: every request will be refused (glmctl keys new NAME)", path)
		return
	}
	fmt.Fprintf(w, "✅ %s: %d key(s)\n", path, len(f.Entries))
}

func checkLimitsFile(path string, bad, warn func(string, ...any), w io.Writer) {
	src, err := os.ReadFile(path)
	if err != nil {
		bad("limits file: %v", err)
		return
	}
	l, warns, err := guard.ParseLimits(src)
	for _, m := range warns {
		warn("%s:%s", path, m)
	}
	if err != nil {
		positioned(path, err, bad)
		return
	}
	fmt.Fprintf(w, "✅ %s: default and %d per-key limit(s)\n", path, len(l.PerKey))
}

// checkLimitsStore connects to the shared limits store and reports whether
// it answers (and accepts glmctl's scripts).
func checkLimitsStore(ctx context.Context, g *config.Guard, bad func(string, ...any), w io.Writer) {
	rs, err := guard.NewRedisStore(guard.RedisOptionsFor(g))
	if err != nil {
		bad("limits_store: %v", err)
		return
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = rs.Close(cctx)
	}()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	switch err := rs.Ping(pctx); {
	case err == nil:
		fmt.Fprintf(w, "✅ limits store %s: reachable\n", rs)
	case errors.Is(err, guard.ErrStoreUnavailable):
		bad("limits store %s: unreachable: %v (with limits_store_failure = %q the guard %s)", rs, err, g.LimitsStoreFailure,
			map[string]string{"closed": "answers 503 until it is back", "open": "falls back to this box's own limits"}[g.LimitsStoreFailure])
	default:
		bad("limits store %s: %v (check the password, TLS and that Redis runs Lua scripts)", rs, err)
	}
}

// checkExposure warns about ways around the guard or its encryption.
func checkExposure(cfg *config.Config, warn func(string, ...any)) {
	g := cfg.Guard
	if host, _, err := net.SplitHostPort(g.Listen); err == nil && !config.IsLoopback(host) && g.TLS == nil {
		warn("guard listens on %s beyond loopback without TLS: keys cross the network in clear; add tls { cert = … key = … } or a TLS proxy in front", g.Listen)
	}
	network, addr := g.UpstreamDial()
	if network == "tcp" {
		if host, _, err := net.SplitHostPort(addr); err == nil && !config.IsLoopback(host) {
			warn("guard upstream %s is not on loopback: clients may reach the model around the guard; use a unix socket (vLLM --uds) or 127.0.0.1", g.Upstream)
		}
	}
	for _, p := range cfg.Programs {
		for i, a := range p.Command {
			host := ""
			switch {
			case a == "--host" && i+1 < len(p.Command):
				host = p.Command[i+1]
			case strings.HasPrefix(a, "--host="):
				host = strings.TrimPrefix(a, "--host=")
			}
			if host != "" && !config.IsLoopback(host) && !strings.Contains(strings.Join(p.Command, " "), "--uds") {
				warn("program %q listens on --host %s: clients can reach it around the guard; bind it to 127.0.0.1 or a unix socket (--uds)", p.Name, host)
			}
		}
	}
}

// checkAuditRoom warns when the audit log's filesystem has less free room
// than two rotations' worth.
func checkAuditRoom(a *config.Audit, warn func(string, ...any)) {
	need := a.Rotate.MaxSize
	if need <= 0 {
		need = 100 << 20
	}
	need *= 2
	dir := filepath.Dir(a.Path)
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			free := int64(st.Bavail) * int64(st.Bsize)
			if free < need {
				warn("audit %s: only %s free on its filesystem, less than 2 × rotate.max_size (%s): with on_error = %q requests will be refused when it fills", a.Path, humanBytes(free), humanBytes(need), a.OnError)
			}
			return
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, os.ErrNotExist) || parent == dir {
			warn("audit %s: cannot check free space: %v", a.Path, err)
			return
		}
		dir = parent
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// checkLive runs selfcheck against the running service.
func checkLive(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil && c.String("url") == "" {
		return err
	}
	opts := selfcheck.Options{URL: c.String("url"), Key: c.String("key"), Config: cfg}
	if opts.URL == "" {
		if cfg.Guard == nil {
			return exit(2, errors.New("the config has no guard block\nTry: glmctl check --live --url http://HOST:PORT"))
		}
		opts.URL = cfg.Guard.LocalURL()
	}
	results := selfcheck.Run(c.Context, opts)
	failed := 0
	for _, r := range results {
		if r.Status == selfcheck.Fail {
			failed++
		}
	}
	_, skipped := selfcheck.Passed(results)
	allowSkip := c.Bool("allow-skip")
	passed := failed == 0 && (len(skipped) == 0 || allowSkip)
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"url": opts.URL, "passed": passed, "failed": failed, "skipped": len(skipped), "checks": results}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			fmt.Fprintln(c.App.Writer, r.String())
		}
	}
	switch {
	case failed > 0:
		return exit(1, fmt.Errorf("%d of %d live checks failed", failed, len(results)))
	case !passed:
		names := make([]string, len(skipped))
		for i, r := range skipped {
			names[i] = r.Name
		}
		return exit(1, fmt.Errorf("%d of %d live checks were skipped, and a skipped check is not a pass: %s\nTry: fix what the ⚠ lines say, or glmctl check --live --allow-skip to accept the skips", len(skipped), len(results), strings.Join(names, "; ")))
	}
	return nil
}
