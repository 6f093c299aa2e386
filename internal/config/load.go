package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// EnvVar names the environment variable that points at the config file.
const EnvVar = "GLMCTL_CONFIG"

// Options tunes how a config file is evaluated.
type Options struct {
	// Executable is the value of the glmctl_bin variable: the absolute path
	// of the running glmctl binary. "" means os.Executable().
	Executable string
	// LookupEnv backs the env("NAME") function; nil means os.LookupEnv.
	LookupEnv func(name string) (string, bool)
}

// Find returns the config path to use: the -c/--config flag's value when
// set, else $GLMCTL_CONFIG, else DefaultPath.
func Find(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv(EnvVar); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads, decodes, defaults and validates the config file at path.
// An invalid file yields Problems listing every problem found.
func Load(path string) (*Config, error) {
	return LoadWithOptions(path, Options{})
}

// LoadWithOptions is Load with explicit Options.
func LoadWithOptions(path string, opts Options) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseWithOptions(src, path, opts)
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	return cfg, nil
}

// Parse decodes, defaults and validates config source; filename is used in
// problem positions only. An invalid source yields Problems listing every
// problem found.
func Parse(src []byte, filename string) (*Config, error) {
	return ParseWithOptions(src, filename, Options{})
}

// ParseWithOptions is Parse with explicit Options.
func ParseWithOptions(src []byte, filename string, opts Options) (*Config, error) {
	c := &collector{filename: filename}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		c.diags(diags)
		return nil, c.result()
	}
	body, ok := file.Body.(*hclsyntax.Body)
	if !ok {
		return nil, fmt.Errorf("parse config %s: unexpected body type %T", filename, file.Body)
	}
	d := &decoder{c: c, warn: &collector{filename: filename}}
	top := &section{c: c, ctx: evalContext(opts), body: body}
	cfg := d.decode(top)
	d.crossCheck(cfg)
	if err := c.result(); err != nil {
		return nil, err
	}
	if w := d.warn.result(); w != nil {
		cfg.Warnings = w.(Problems)
	}
	sum := sha256.Sum256(src)
	cfg.SHA256 = hex.EncodeToString(sum[:])
	cfg.filename, cfg.places = filename, c.places
	return cfg, nil
}

// evalContext offers the glmctl_bin variable and the env() function.
func evalContext(opts Options) *hcl.EvalContext {
	bin := opts.Executable
	if bin == "" {
		if exe, err := os.Executable(); err == nil {
			bin = exe
		} else {
			bin = "glmctl"
		}
	}
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{"glmctl_bin": cty.StringVal(bin)},
		Functions: map[string]function.Function{"env": envFunc(lookup)},
	}
}

// envFunc implements env("NAME") and env("NAME", "fallback"). An unset
// variable without a fallback is an error, so a typo is not silently "".
func envFunc(lookup func(string) (string, bool)) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the value of an environment variable.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "fallback", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, function.NewArgErrorf(2, "env takes a name and at most one fallback")
			}
			name := args[0].AsString()
			if v, ok := lookup(name); ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, function.NewArgErrorf(0, "environment variable %s is not set: set it, or give a fallback: env(%q, \"value\")", name, name)
		},
	})
}
