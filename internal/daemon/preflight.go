package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/guard"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// Preflight checks what cfg names outside itself, the way New uses it: the
// policy's rules as the guard compiles them, the guard's TLS pair and Redis
// files, the metrics bearer token, the audit key and log path, and each
// program's user, directory, command and log file.
// Every problem comes back placed at its setting (FILE:LINE:COL). New runs
// it before anything starts, a reload runs it on the new config, and
// glmctl check runs it offline, so the three agree on what is wrong.
//
// What depends on the running process (the open-files limit, ports in
// use) is New's to find; it places those errors at their settings too.
func Preflight(cfg *config.Config) config.Problems {
	var errs []error
	if g := cfg.Guard; g != nil {
		if t := g.TLS; t != nil {
			if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
				errs = append(errs, config.Setting("guard.tls.cert", fmt.Errorf("guard tls: certificate %s and key %s: %w", t.Cert, t.Key, err)))
			}
		}
		if g.LimitsStore != "" {
			err := guard.ValidateRedisOptions(guard.RedisOptions{URL: g.LimitsStore, PasswordFile: g.LimitsStorePasswordFile,
				CAFile: g.LimitsStoreCAFile, CertFile: g.LimitsStoreCertFile, KeyFile: g.LimitsStoreKeyFile})
			errs = append(errs, config.Setting("guard.limits_store", err))
		}
	}
	if m := cfg.Metrics; m != nil && m.BearerTokenFile != "" {
		_, err := readBearerToken(m.BearerTokenFile)
		errs = append(errs, config.Setting("metrics.bearer_token_file", err))
	}
	if a := cfg.Audit; a != nil {
		if a.HMACKeyFile != "" {
			_, err := audit.ReadHMACKey(a.HMACKeyFile)
			errs = append(errs, config.Setting("audit.hmac_key_file", err))
		}
		errs = append(errs, config.Setting("audit.path", checkAuditPath(a.Path)))
	}
	for _, p := range cfg.Programs {
		errs = append(errs, launcher.CheckProgram(p)...)
	}
	var ps config.Problems
	// The policy's rules as the guard compiles them: what only the
	// automaton finds (too large, empty once normalised) comes placed at
	// its rule already (config.PolicyRule.At).
	if _, err := guard.CompilePolicy(cfg.Policy); err != nil {
		ps = append(ps, config.Problem{Message: err.Error()})
	}
	for _, e := range errs {
		if e == nil {
			continue
		}
		if placed, ok := cfg.Place(e).(config.Problems); ok {
			ps = append(ps, placed...)
		}
	}
	return ps
}

// checkAuditPath tells why the audit log cannot be at path: it is a
// directory, or what should be its directory is a file.
func checkAuditPath(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("audit path %s is a directory: write a file path such as %s", path, filepath.Join(path, "audit.log"))
	}
	// The nearest existing ancestor must be a directory (the writer
	// creates the missing ones).
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) && dir != filepath.Dir(dir) {
			continue
		}
		if err == nil && !st.IsDir() {
			return fmt.Errorf("audit path %s: %s is a file, not a directory", path, dir)
		}
		return nil
	}
}

// readBearerToken reads the metrics bearer token file: its content less
// surrounding space, never empty.
func readBearerToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metrics bearer_token_file: %w", err)
	}
	token := []byte(strings.TrimSpace(string(b)))
	if len(token) == 0 {
		return nil, fmt.Errorf("metrics bearer_token_file %s is empty: /metrics would be open to anyone", path)
	}
	return token, nil
}
