package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
)

// auditCommand is `glmctl audit …`: verify, summarise and follow the trail.
func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "verify, summarise and follow the audit trail",
		Description: "FILES default to the config's audit.path and its rotated siblings (built-in\n" +
			"<path>.<time>[.gz], logrotate's <path>.N[.gz] and <path>-DATE[.gz]).",
		Subcommands: []*cli.Command{
			auditStatsCommand(),
			auditTailCommand(),
			auditVerifyCommand(),
			{
				Name:  "reopen",
				Usage: "make the daemon reopen the audit log (logrotate postrotate; SIGUSR1 reopens it and every program's log too)",
				Action: func(c *cli.Context) error {
					if err := controlCall(c, "audit.reopen", nil, nil); err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, "audit log reopened")
					return nil
				},
			},
		},
	}
}

// auditTarget is what the audit subcommands read.
type auditTarget struct {
	files []string
	cfg   *config.Audit // nil when FILES were given and no config could be read
}

// auditFiles returns FILES, or the config's audit log and its rotated files.
func auditFiles(c *cli.Context) (*auditTarget, error) {
	var acfg *config.Audit
	if cfg, err := loadConfig(c); err == nil {
		acfg = cfg.Audit
	} else if c.Args().Len() == 0 {
		return nil, err
	}
	if c.Args().Len() > 0 {
		return &auditTarget{files: c.Args().Slice(), cfg: acfg}, nil
	}
	if acfg == nil {
		return nil, exit(2, errors.New("the config has no audit block\nTry: name the audit log files: glmctl audit verify FILE…"))
	}
	files, err := audit.Files(acfg.Path)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no audit log at %s", acfg.Path)
	}
	return &auditTarget{files: files, cfg: acfg}, nil
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON"}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func auditStatsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "calls per path with avg/max/min time, per key and model, statuses, rejections, tokens, latency and TTFT percentiles, top clients",
		ArgsUsage: "[FILES…]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "since", Usage: "only records newer than `DUR` (24h, 7d) or since a time (RFC 3339 or YYYY-MM-DD)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			var since time.Time
			if s := c.String("since"); s != "" {
				var err error
				if since, err = parseSince(s, time.Now()); err != nil {
					return exit(2, err)
				}
			}
			t, err := auditFiles(c)
			if err != nil {
				return err
			}
			rep, err := audit.ReadStats(t.files, since)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, rep)
			}
			return rep.WriteText(c.App.Writer)
		},
	}
}

// parseSince reads --since: a duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration like 24h or 7d, or a time like 2026-11-25T10:00:00Z", s)
}

func auditTailCommand() *cli.Command {
	return &cli.Command{
		Name:      "tail",
		Usage:     "print the last records readably; -f follows the log across rotation",
		ArgsUsage: "[FILES…]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new records"},
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Value: 20, Usage: "print the last `N` records"},
			&cli.StringFlag{Name: "key", Usage: "only records of key `NAME`"},
			&cli.IntFlag{Name: "status", Usage: "only records with HTTP status `N`"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			t, err := auditFiles(c)
			if err != nil {
				return err
			}
			f := audit.Filter{Key: c.String("key"), Status: c.Int("status")}
			out := c.App.Writer
			show := func(r *audit.Record) {
				if c.Bool("json") {
					b, _ := json.Marshal(r)
					fmt.Fprintf(out, "%s\n", b)
					return
				}
				fmt.Fprintln(out, audit.FormatRecord(r))
			}
			recs, err := audit.Tail(t.files, c.Int("lines"), f)
			if err != nil {
				return err
			}
			for i := range recs {
				show(&recs[i])
			}
			if !c.Bool("follow") {
				return nil
			}
			return audit.Follow(c.Context, t.files[len(t.files)-1], f, show)
		},
	}
}

func auditVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check the hash chain: exit 0 intact, 1 edited, deleted, inserted, reordered or truncated records",
		ArgsUsage: "[FILES…]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "hmac-key-file", Usage: "HMAC key `FILE` of a keyed chain (default: the config's audit.hmac_key_file)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			t, err := auditFiles(c)
			if err != nil {
				return err
			}
			var opts audit.VerifyOptions
			keyFile := c.String("hmac-key-file")
			if keyFile == "" && t.cfg != nil {
				keyFile = t.cfg.HMACKeyFile
			}
			if keyFile != "" {
				if opts.HMACKey, err = audit.ReadHMACKey(keyFile); err != nil {
					return exit(2, err)
				}
			}
			rep, err := audit.Verify(t.files, opts)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, rep); err != nil {
					return err
				}
			} else {
				printVerify(c.App.Writer, rep)
			}
			if !rep.Intact() {
				return exit(1, nil)
			}
			return nil
		},
	}
}

// printVerify prints a verify report for people.
func printVerify(w io.Writer, rep *audit.VerifyReport) {
	for _, f := range rep.Problems {
		fmt.Fprintf(w, "❌ %s\n", f)
	}
	for _, f := range rep.Warnings {
		fmt.Fprintf(w, "⚠ %s\n", f)
	}
	if rep.Intact() {
		fmt.Fprintf(w, "✅ intact: %d records in %d files\n", rep.Records, len(rep.Files))
		return
	}
	fmt.Fprintf(w, "❌ broken: %d problems in %d records; first: %s\n", len(rep.Problems), rep.Records, rep.Problems[0])
}
