package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/glmctl/glmctl/internal/keys"
)

// keysCommand is `glmctl keys new|list|revoke|rotate|hash`. Every write is a
// locked read-modify-write of the keys file (keys.Update): atomic, mode and
// owner kept, never a file that would not parse. Secrets are printed once,
// alone on the first line of stdout, and never logged.
func keysCommand() *cli.Command {
	fileFlag := &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "keys `FILE` (default: the config's guard.keys_file)"}
	return &cli.Command{
		Name:  "keys",
		Usage: "create, list, revoke, rotate and hash API keys",
		Subcommands: []*cli.Command{
			{
				Name:      "new",
				Usage:     "create a key; it is printed once, alone on the first line of stdout",
				ArgsUsage: "NAME",
				Description: "A NAME already in the file is refused unless --replace is given. With --replace the\n" +
					"name is reissued in place: it gets the new secret, every earlier secret of it stops working at once\n" +
					"(rotated ones in their grace too), a revoked name is enabled again, its role and models are kept\n" +
					"unless --role or --models say otherwise, and its limits (the limits file is keyed by name) stay.\n" +
					"The running guard picks the change up within about 0.1 s and records it in the audit trail\n" +
					"(admin records key.enabled and key.rotated).",
				Flags: []cli.Flag{
					fileFlag,
					&cli.StringFlag{Name: "role", Value: keys.RoleUser, Usage: "`ROLE`: user or admin"},
					&cli.StringFlag{Name: "models", Usage: "comma-separated `MODELS` the key may use (default: all)"},
					&cli.StringFlag{Name: "expires", Usage: "expiry as a duration from now (`DUR`: 90m, 720h, 30d) or a date (2027-01-01, RFC 3339)"},
					&cli.BoolFlag{Name: "replace", Usage: "reissue an existing (e.g. revoked) NAME in place: new secret, old ones end now, limits kept"},
				},
				Action: keysNew,
			},
			{
				Name:   "list",
				Usage:  "list keys: name, role, models, created, expires, state (never a secret)",
				Flags:  []cli.Flag{fileFlag, &cli.BoolFlag{Name: "json", Usage: "print a JSON array"}},
				Action: keysList,
			},
			{
				Name:      "revoke",
				Usage:     "disable a key (kept in the file as disabled, so audit records naming it keep their meaning)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{fileFlag},
				Action:    keysRevoke,
			},
			{
				Name:      "rotate",
				Usage:     "give a key a new secret, printed once; the old one works until the grace period ends",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					fileFlag,
					&cli.StringFlag{Name: "grace", Value: "24h", Usage: "how long the old key keeps working (`DUR`; 0 ends it and every earlier one now)"},
				},
				Action: keysRotate,
			},
			{
				Name:      "policy",
				Usage:     "show or set a key's own request policy (it can only tighten the config's policy block)",
				ArgsUsage: "NAME",
				Description: "Without flags, prints the key's policy. Each flag sets one part and keeps the others:\n" +
					"--max-tokens 500 caps max_tokens (0 removes the key's own cap), --deny-params tools,logprobs\n" +
					"replaces the denied parameters (\"\" removes them), --clear removes the whole policy.\n" +
					"A running guard picks the change up with the keys file.",
				Flags: []cli.Flag{fileFlag,
					&cli.Int64Flag{Name: "max-prompt-tokens", Usage: "`N`: largest prompt, in estimated tokens (0: none of the key's own)"},
					&cli.Int64Flag{Name: "max-tokens", Usage: "`N`: largest completion a request may ask for (0: none of the key's own)"},
					&cli.StringFlag{Name: "deny-params", Usage: "comma-separated request `PARAMS` the key may not set (\"\": none)"},
					&cli.BoolFlag{Name: "clear", Usage: "remove the key's policy: the config's alone applies"},
				},
				Action: keysPolicy,
			},
			{
				Name:   "hash",
				Usage:  "replace every clear-text key in the file by its SHA-256, in place",
				Flags:  []cli.Flag{fileFlag},
				Action: keysHash,
			},
		},
	}
}

// nameAndKeysFile returns the single NAME argument and the keys file.
func nameAndKeysFile(c *cli.Context) (name, path string, err error) {
	if name, err = oneName(c); err != nil {
		return "", "", err
	}
	path, err = keysFile(c)
	return name, path, err
}

// keysFile returns the keys file to work on: --file, else the config's
// guard.keys_file.
func keysFile(c *cli.Context) (string, error) {
	if f := c.String("file"); f != "" {
		return f, nil
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return "", err
	}
	if cfg.Guard == nil || cfg.Guard.KeysFile == "" {
		path, _ := configSource(c)
		return "", exit(2, fmt.Errorf("%s has no guard.keys_file\nTry: glmctl keys … --file FILE", path))
	}
	return cfg.Guard.KeysFile, nil
}

// oneName returns the single NAME argument.
func oneName(c *cli.Context) (string, error) {
	if c.NArg() != 1 || strings.TrimSpace(c.Args().First()) == "" {
		return "", exit(2, fmt.Errorf("keys %s takes one NAME (see --help)", c.Command.Name))
	}
	return c.Args().First(), nil
}

func keysNew(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	role := c.String("role")
	if role != keys.RoleUser && role != keys.RoleAdmin {
		return exit(2, fmt.Errorf("--role %q: use user or admin", role))
	}
	now := time.Now().UTC().Truncate(time.Second)
	var expires time.Time
	if s := c.String("expires"); s != "" {
		if expires, err = parseExpiry(s, now); err != nil {
			return exit(2, err)
		}
	}
	var models []string
	for _, m := range strings.Split(c.String("models"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			models = append(models, m)
		}
	}
	path, err := keysFile(c)
	if err != nil {
		return err
	}
	secret, err := keys.NewSecret()
	if err != nil {
		return err
	}
	replaced, wasRevoked := false, false
	err = keys.Update(path, true, func(f *keys.File) error {
		e := &keys.Entry{Name: name, SHA256: keys.Hash(secret), Role: role, Models: models, Created: now, Expires: expires}
		old := f.Entry(name)
		switch {
		case old == nil:
			return f.Add(e)
		case !c.Bool("replace") && old.Disabled:
			return exit(1, fmt.Errorf("key %q exists and is revoked\nTry: glmctl keys new %s --replace (reissues the name: new secret, limits kept)", name, name))
		case !c.Bool("replace"):
			return exit(1, fmt.Errorf("key %q exists\nTry: glmctl keys rotate %s (the old secret keeps working for a grace period), or keys new %s --replace (it stops now)", name, name, name))
		}
		if !c.IsSet("role") {
			e.Role = old.Role
		}
		if !c.IsSet("models") {
			e.Models = old.Models
		}
		role = e.Role
		replaced = true
		wasRevoked, err = f.Replace(e)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, secret)
	switch {
	case replaced && wasRevoked:
		fmt.Fprintf(c.App.ErrWriter, "revoked key %q (%s) reissued in %s: enabled with a new secret, its limits kept; it is shown only this once\n", name, role, path)
	case replaced:
		fmt.Fprintf(c.App.ErrWriter, "key %q (%s) replaced in %s: its earlier secrets no longer work; the new one is shown only this once\n", name, role, path)
	default:
		fmt.Fprintf(c.App.ErrWriter, "key %q (%s) added to %s; it is shown only this once\n", name, role, path)
	}
	return nil
}

// parseExpiry reads --expires: a Go duration, a number of days ("30d"), a
// date (2006-01-02, midnight UTC) or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 {
			return now.AddDate(0, 0, days), nil
		}
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if !t.After(now) {
				return time.Time{}, fmt.Errorf("--expires %q is in the past", s)
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--expires %q: give a duration (90m, 720h, 30d) or a date (2027-01-01, 2027-01-01T00:00:00Z)", s)
}

// keysPolicy shows or sets a key's own request policy.
func keysPolicy(c *cli.Context) error {
	name, path, err := nameAndKeysFile(c)
	if err != nil {
		return err
	}
	set := c.Bool("clear") || c.IsSet("max-prompt-tokens") || c.IsSet("max-tokens") || c.IsSet("deny-params")
	if c.Bool("clear") && (c.IsSet("max-prompt-tokens") || c.IsSet("max-tokens") || c.IsSet("deny-params")) {
		return exit(2, errors.New("--clear removes the whole policy: give it alone"))
	}
	var p *keys.PolicyOverride
	if !set {
		f, _, err := keys.ReadFile(path)
		if err != nil {
			return err
		}
		e := f.Entry(name)
		if e == nil {
			return exit(1, fmt.Errorf("no key %q in %s", name, path))
		}
		p = e.Policy
	} else {
		err = keys.Update(path, false, func(f *keys.File) error {
			e := f.Entry(name)
			if e == nil {
				return exit(1, fmt.Errorf("no key %q in %s", name, path))
			}
			next := &keys.PolicyOverride{}
			if e.Policy != nil && !c.Bool("clear") {
				*next = *e.Policy
				next.DenyParams = slices.Clone(e.Policy.DenyParams)
			}
			if c.IsSet("max-prompt-tokens") {
				next.MaxPromptTokens = c.Int64("max-prompt-tokens")
			}
			if c.IsSet("max-tokens") {
				next.MaxTokens = c.Int64("max-tokens")
			}
			if c.IsSet("deny-params") {
				next.DenyParams = nil
				for _, d := range strings.Split(c.String("deny-params"), ",") {
					if d = strings.TrimSpace(d); d != "" {
						next.DenyParams = append(next.DenyParams, d)
					}
				}
			}
			wasClear := e.Clear != ""
			if err := f.SetPolicy(name, next); err != nil {
				return exit(2, err)
			}
			if wasClear && e.Clear == "" {
				fmt.Fprintf(c.App.ErrWriter, "key %q was stored in clear text; it is now stored as its SHA-256 (the secret is unchanged)\n", name)
			}
			p = e.Policy
			return nil
		})
		if err != nil {
			return err
		}
	}
	w := c.App.Writer
	if p == nil {
		fmt.Fprintf(w, "key %q: no policy of its own (the config's policy block alone applies)\n", name)
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "key %q: %s (tightens the config's policy block)\n", name, b)
	return nil
}

// keyInfo is one line of `keys list --json`; it never holds a secret.
type keyInfo struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Models    []string   `json:"models"`
	Created   *time.Time `json:"created"`
	Expires   *time.Time `json:"expires"`
	Disabled  bool       `json:"disabled"`
	ClearText bool       `json:"clear_text"`
	Previous  int        `json:"previous"` // rotated-out secrets still valid
	// Policy is the key's own request policy (absent: the config's alone).
	Policy *keys.PolicyOverride `json:"policy,omitempty"`
}

func keysList(c *cli.Context) error {
	path, err := keysFile(c)
	if err != nil {
		return err
	}
	f, _, err := keys.ReadFile(path)
	if err != nil {
		return err
	}
	now := time.Now()
	infos := make([]keyInfo, 0, len(f.Entries))
	for _, e := range f.Entries {
		ki := keyInfo{Name: e.Name, Role: e.Role, Models: e.Models, Disabled: e.Disabled, ClearText: e.Clear != "", Policy: e.Policy}
		if ki.Models == nil {
			ki.Models = []string{}
		}
		if !e.Created.IsZero() {
			t := e.Created
			ki.Created = &t
		}
		if !e.Expires.IsZero() {
			t := e.Expires
			ki.Expires = &t
		}
		for _, p := range e.Previous {
			if now.Before(p.Until) {
				ki.Previous++
			}
		}
		infos = append(infos, ki)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tMODELS\tCREATED\tEXPIRES\tSTATE")
	day := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, ki := range infos {
		models := "all"
		if len(ki.Models) > 0 {
			models = strings.Join(ki.Models, ",")
		}
		state := "active"
		switch {
		case ki.ClearText:
			state = "clear text — run glmctl keys hash"
		case ki.Disabled:
			state = "disabled"
		case ki.Expires != nil && !now.Before(*ki.Expires):
			state = "expired"
		}
		if ki.Previous > 0 {
			state += fmt.Sprintf(" (+%d rotated, in grace)", ki.Previous)
		}
		if ki.Policy != nil {
			state += " (own policy: glmctl keys policy " + ki.Name + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ki.Name, ki.Role, models, day(ki.Created), day(ki.Expires), state)
	}
	return tw.Flush()
}

func keysRevoke(c *cli.Context) error {
	name, path, err := nameAndKeysFile(c)
	if err != nil {
		return err
	}
	var was bool
	err = keys.Update(path, false, func(f *keys.File) error {
		was, err = f.Revoke(name)
		return err
	})
	if err != nil {
		return err
	}
	if was {
		fmt.Fprintf(c.App.ErrWriter, "key %q revoked (disabled) in %s\n", name, path)
	} else {
		fmt.Fprintf(c.App.ErrWriter, "key %q was already disabled in %s\n", name, path)
	}
	return nil
}

func keysRotate(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	grace, err := time.ParseDuration(c.String("grace"))
	if err != nil || grace < 0 {
		return exit(2, fmt.Errorf("--grace %q: give a duration such as 24h or 30m (0 ends the old key now)", c.String("grace")))
	}
	path, err := keysFile(c)
	if err != nil {
		return err
	}
	secret, err := keys.NewSecret()
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	var until time.Time
	if grace > 0 {
		until = now.Add(grace)
	}
	err = keys.Update(path, false, func(f *keys.File) error {
		if e := f.Entry(name); e != nil && e.Disabled {
			return fmt.Errorf("rotate key %q: it is revoked\nTry: glmctl keys new %s --replace (reissues the name with a new secret)", name, name)
		}
		return f.Rotate(name, secret, until, now)
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, secret)
	if until.IsZero() {
		fmt.Fprintf(c.App.ErrWriter, "key %q rotated in %s; no earlier key of it works any more; the new one is shown only this once\n", name, path)
	} else {
		fmt.Fprintf(c.App.ErrWriter, "key %q rotated in %s; the old key works until %s; the new one is shown only this once\n", name, path, until.Format(time.RFC3339))
	}
	return nil
}

func keysHash(c *cli.Context) error {
	path, err := keysFile(c)
	if err != nil {
		return err
	}
	var names []string
	err = keys.Update(path, false, func(f *keys.File) error {
		names = f.HashClear()
		if len(names) == 0 {
			return errNothingToHash
		}
		return nil
	})
	if errors.Is(err, errNothingToHash) {
		fmt.Fprintf(c.App.ErrWriter, "%s holds no clear-text key\n", path)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "%s: %d clear-text key(s) replaced by their sha256: %s\n", path, len(names), strings.Join(names, ", "))
	return nil
}

// errNothingToHash stops keys.Update from rewriting an unchanged file.
var errNothingToHash = errors.New("nothing to hash")
