package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/pkg/config"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:        "check",
		Usage:       "validate the config (and the keys and limits files) offline",
		Description: "Every problem is reported at once with file:line:col, warnings too. Exit: 0 ok, 1 problems.",
		Action: func(c *cli.Context) error {
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
				return exit(1, err)
			}
			fmt.Fprintf(w, "✅ %s: valid (%d programs)\n", path, len(cfg.Programs))
			printWarnings(w, cfg.Warnings)
			return nil
		},
	}
}

func printWarnings(w io.Writer, ws config.Problems) {
	for _, p := range ws {
		fmt.Fprintf(w, "⚠ %s\n", p.Error())
	}
}
