package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/control"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show programs, GPUs and the guard",
		ArgsUsage: "[NAME…]",
		Description: "Columns as supervisorctl prints them, plus health, restarts and last exit, then\n" +
			"the guard (its keys, limits and certificate files) and the configuration in force.\n" +
			"Exit: 0 all RUNNING and every guard file loaded; 3 a program is not RUNNING, or a\n" +
			"guard file failed its last load (an older version stays in force), or the shared limits store\n" +
			"is unreachable; 4 daemon unreachable.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON object (stable field names)"}},
		Action: func(c *cli.Context) error {
			cl, err := controlClient(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
			defer cancel()
			st, err := cl.Status(ctx, c.Args().Slice()...)
			if err != nil {
				return statusErr(err)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printStatus(c.App.Writer, st)
			}
			for _, p := range st.Programs {
				if p.State != "RUNNING" {
					return exit(3, nil)
				}
			}
			if st.Guard != nil && (!st.Guard.FilesOK || !st.Guard.LimitsStoreUp) {
				return exit(3, nil)
			}
			return nil
		},
	}
}

// statusErr maps a failed status call to its exit code: 1 for an unknown
// program, 4 for a daemon that cannot be reached or does not answer in time
// (supervisorctl's code for a server it cannot talk to), else 1.
func statusErr(err error) error {
	var re *control.RemoteError
	if errors.As(err, &re) && re.Status == http.StatusNotFound {
		return exit(1, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return exit(4, fmt.Errorf("%w: no answer on the control socket: %w", control.ErrUnreachable, err))
	}
	return controlErr(err)
}

// printStatus writes aligned columns a supervisorctl user reads at once.
func printStatus(w io.Writer, st *control.StatusReply) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tRESTARTS\tHEALTH\tLAST EXIT\tMESSAGE")
	for _, p := range st.Programs {
		pid, up := "-", "-"
		if p.PID > 0 {
			pid = strconv.Itoa(p.PID)
			up = formatUptime(p.UptimeSeconds)
		}
		last := "-"
		if p.LastExit != nil {
			last = strconv.Itoa(*p.LastExit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Name, p.State, pid, up, p.Restarts, p.Health, last, p.Message)
	}
	tw.Flush()
	if len(st.GPUs) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "GPU\tNAME\tUUID\tMEMORY")
		for _, g := range st.GPUs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s / %s\n", g.Index, g.Name, g.UUID, gib(g.MemoryUsedBytes), gib(g.MemoryTotalBytes))
		}
		tw.Flush()
	} else if st.GPUMessage != "" {
		fmt.Fprintf(w, "\nGPUs: %s\n", st.GPUMessage)
	}
	if st.Guard != nil {
		ready := "ready"
		if !st.Guard.Ready {
			ready = "not ready (answering 503 until the model is RUNNING)"
		}
		fmt.Fprintf(w, "\nguard: %s -> %s, %s, %d/%d connections\n", st.Guard.Listen, st.Guard.Upstream, ready,
			st.Guard.OpenConnections, st.Guard.MaxConnections)
		if n := st.Guard.PolicyRules; n >= 0 {
			fmt.Fprintf(w, "  request policy: %d rule(s), in force since the config (below)\n", n)
		}
		if st.Guard.LimitsStore != "" && st.Guard.LimitsStore != "in-process" {
			state := "reachable"
			if !st.Guard.LimitsStoreUp {
				state = "UNREACHABLE (limits_store_failure decides: 503, or this box's own limits)"
			}
			fmt.Fprintf(w, "  limits store: %s, %s\n", st.Guard.LimitsStore, state)
		}
		for _, f := range st.Guard.Files {
			if f.Error != "" {
				fmt.Fprintf(w, "  %s: NOT LOADED at %s (the version loaded at %s stays in force): %s\n",
					f.Path, f.ErrorAt.Format(time.RFC3339), f.LoadedAt.Format(time.RFC3339), f.Error)
				continue
			}
			fmt.Fprintf(w, "  %s: %d entries, sha256 %.12s, loaded %s\n", f.Path, f.Entries, f.SHA256, f.LoadedAt.Format(time.RFC3339))
		}
	}
	if c := st.Config; c != nil {
		path := c.Path
		if path == "" {
			path = "(embedded)"
		}
		fmt.Fprintf(w, "\nconfig: %s, sha256 %.12s, in force since %s\n", path, c.SHA256, c.LoadedAt.Format(time.RFC3339))
		if c.LastReloadError != "" {
			fmt.Fprintf(w, "  last reload REJECTED at %s (the config above stays in force): %s\n", c.LastReloadErrorAt.Format(time.RFC3339), c.LastReloadError)
		}
	}
}

// formatUptime prints H:MM:SS like supervisorctl, with days when longer.
func formatUptime(s int64) string {
	d, s := s/86400, s%86400
	h, s := s/3600, s%3600
	m, s := s/60, s%60
	if d > 0 {
		return fmt.Sprintf("%d days, %d:%02d:%02d", d, h, m, s)
	}
	return fmt.Sprintf("%d:%02d:%02d", h, m, s)
}

func gib(b uint64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }
