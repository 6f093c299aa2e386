package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/gpu"
)

func gpuCommand() *cli.Command {
	return &cli.Command{
		Name:  "gpu",
		Usage: "show what NVML sees: GPUs, memory, utilization, temperature, power, ECC, processes",
		Description: "Reads NVML directly (the daemon need not run). The config, when found, adds\n" +
			"which programs use which GPUs; --json reads no config. Exit: 0, 1 NVML unavailable or a GPU unreadable.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the GPUs as a JSON array; when NVML or a GPU cannot be read, an object {\"error\": why, \"gpus\": [what could be read]}"}},
		Action: func(c *cli.Context) error {
			if c.Bool("json") {
				return gpuJSON(c)
			}
			cfg, err := gpuConfig(c)
			if err != nil {
				return err
			}
			logger := hclog.New(&hclog.LoggerOptions{Name: "glmctl", Level: hclog.Warn, Output: c.App.ErrWriter})
			m, err := gpu.Open(logger)
			if err != nil {
				return exit(1, err)
			}
			defer m.Close()
			devs, err := m.Snapshot()
			printGPUTable(c.App.Writer, m.DriverVersion(), devs)
			printGPUConfigNotes(c.App.Writer, cfg, m.Count())
			if err != nil {
				return exit(1, fmt.Errorf("read GPUs: %w", err))
			}
			return nil
		},
	}
}

// gpuJSON is `gpu --json`: scripts always get JSON on stdout — the array of
// GPUs, or, when NVML is missing or a GPU cannot be read, an object whose
// "error" says why (exit 1) and whose "gpus" holds what could be read.
func gpuJSON(c *cli.Context) error {
	logger := hclog.New(&hclog.LoggerOptions{Name: "glmctl", Level: hclog.Warn, Output: c.App.ErrWriter})
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	fail := func(err error, devs []gpu.Device) error {
		if devs == nil {
			devs = []gpu.Device{}
		}
		if e := enc.Encode(gpuError{Error: err.Error(), GPUs: devs}); e != nil {
			return e
		}
		return exit(1, err)
	}
	m, err := gpu.Open(logger)
	if err != nil {
		return fail(err, nil)
	}
	defer m.Close()
	devs, err := m.Snapshot()
	if err != nil {
		return fail(fmt.Errorf("read GPUs: %w", err), devs)
	}
	if devs == nil {
		devs = []gpu.Device{}
	}
	return enc.Encode(devs)
}

// gpuError is what `gpu --json` prints when it cannot read every GPU.
type gpuError struct {
	Error string       `json:"error"`
	GPUs  []gpu.Device `json:"gpus"`
}

// gpuConfig loads the config for its notes on GPUs; none at the default
// place is fine, since `glmctl gpu` is for machines being set up too.
func gpuConfig(c *cli.Context) (*config.Config, error) {
	cfg, err := loadConfig(c)
	if err != nil && errors.Is(err, os.ErrNotExist) && !c.Bool("demo") &&
		c.String("config") == "" && os.Getenv(config.EnvVar) == "" {
		return nil, nil
	}
	return cfg, err
}

// printGPUTable writes one line per GPU, as nvidia-smi users expect.
func printGPUTable(w io.Writer, driver string, devs []gpu.Device) {
	if driver != "" {
		fmt.Fprintf(w, "NVIDIA driver %s, %d GPUs\n", driver, len(devs))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GPU\tNAME\tUUID\tMEMORY USED / TOTAL\tUTIL\tTEMP\tPOWER\tECC\tPROCESSES")
	for i := range devs {
		d := &devs[i]
		util, temp, power, ecc := "n/a", "n/a", "n/a", "n/a"
		if d.Has(gpu.FieldUtilization) {
			util = fmt.Sprintf("%.0f%%", d.Utilization*100)
		}
		if d.Has(gpu.FieldTemperature) {
			temp = fmt.Sprintf("%.0f °C", d.Temperature)
		}
		if d.Has(gpu.FieldPower) {
			power = fmt.Sprintf("%.0f W", d.Power)
		}
		if d.Has(gpu.FieldECC) {
			ecc = strconv.FormatUint(d.ECCUncorrected, 10)
		}
		switch {
		case d.Has(gpu.FieldRemap) && d.RemapFailed:
			ecc += " (remap failed)"
		case d.Has(gpu.FieldRemap) && d.RemapPending:
			ecc += " (reset needed)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s / %s\t%s\t%s\t%s\t%s\t%s\n", d.Index, d.Name, d.UUID,
			gpu.GiB(d.MemoryUsed), gpu.GiB(d.MemoryTotal), util, temp, power, ecc, gpu.FormatProcesses(d.Processes))
	}
	tw.Flush()
}

// printGPUConfigNotes says which programs use which GPUs and what the
// preflight will ask of them.
func printGPUConfigNotes(w io.Writer, cfg *config.Config, count int) {
	if cfg == nil {
		return
	}
	var lines []string
	if g := cfg.GPU; g != nil {
		if g.Count > 0 && count < g.Count {
			lines = append(lines, fmt.Sprintf("warning: the config expects %d GPUs (gpu.count), NVML sees %d", g.Count, count))
		}
	}
	for _, p := range cfg.Programs {
		if len(p.GPUs) == 0 {
			continue
		}
		ids := make([]string, len(p.GPUs))
		for i, g := range p.GPUs {
			ids[i] = strconv.Itoa(g)
			if g >= count {
				lines = append(lines, fmt.Sprintf("warning: program %q wants GPU %d, NVML sees %d GPUs", p.Name, g, count))
			}
		}
		line := fmt.Sprintf("program %q uses GPUs %s", p.Name, strings.Join(ids, ","))
		if g := cfg.GPU; g != nil && g.MinFreeMemory > 0 {
			line += fmt.Sprintf(" (needs %s free on each before it starts)", gpu.GiB(uint64(g.MinFreeMemory)))
		}
		lines = append(lines, line)
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}
