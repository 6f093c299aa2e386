package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
)

// prepareDemo creates what the embedded demo config expects and that a real
// box would have provisioned: its state directory, a keys file with a demo
// user key and a service key for the stand-in web UI (hashed; the secrets go
// to 0600 files beside it), and a limits file. Existing files are kept, so the
// demo key stays the same across runs.
func prepareDemo(cfg *config.Config, logger hclog.Logger) error {
	if cfg.Guard == nil || cfg.Guard.KeysFile == "" {
		return nil
	}
	dir := filepath.Dir(cfg.Guard.KeysFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	demoKeyFile := filepath.Join(dir, "demo.key")
	uiKeyFile := filepath.Join(dir, "ui.key")
	if _, err := os.Stat(cfg.Guard.KeysFile); errors.Is(err, os.ErrNotExist) {
		demoKey, err := keys.NewSecret()
		if err != nil {
			return err
		}
		uiKey, err := keys.NewSecret()
		if err != nil {
			return err
		}
		keys := map[string]any{"api_keys": map[string]any{
			"demo":  map[string]any{"sha256": keys.Hash(demoKey), "role": "user"},
			"webui": map[string]any{"sha256": keys.Hash(uiKey), "role": "user"},
		}}
		if err := writeJSONFile(cfg.Guard.KeysFile, keys); err != nil {
			return err
		}
		if err := os.WriteFile(demoKeyFile, []byte(demoKey+"\n"), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(uiKeyFile, []byte(uiKey+"\n"), 0o600); err != nil {
			return err
		}
	}
	if lf := cfg.Guard.LimitsFile; lf != "" {
		if _, err := os.Stat(lf); errors.Is(err, os.ErrNotExist) {
			limits := map[string]any{"rate_limits": map[string]any{
				"default": map[string]any{"rpm": 60, "tpm": 60000, "concurrency": 8},
				"webui":   map[string]any{"rpm": 600, "tpm": 600000},
			}}
			if err := writeJSONFile(lf, limits); err != nil {
				return err
			}
		}
	}
	logger.Info("demo: a user key is in " + demoKeyFile + "; try:\n  curl -s http://" + cfg.Guard.Listen +
		"/v1/chat/completions -H \"Authorization: Bearer $(cat " + demoKeyFile + ")\" -H 'Content-Type: application/json'" +
		" -d '{\"model\":\"glm-4.7-flash\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'")
	return nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
