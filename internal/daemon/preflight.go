package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
	"github.com/glmctl/glmctl/pkg/guard"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// Preflight checks what cfg names outside itself, the way New uses it: the
// policy's rules as the guard compiles them, the guard's TLS pair and Redis
// files, the metrics bearer token, the audit key and log path, and each
// program's user, directory, command, health check command and log file.
// Every finding comes back placed at its setting (FILE:LINE:COL). New
// refuses a config with problems before anything starts, and glmctl check
// prints the same list, so the two agree on what is wrong.
//
// A program that does not start by itself (autostart = false) only gets
// warnings: a tool a box never runs must not keep the rest from starting;
// glmctl start then fails it with the same message. What depends on the
// running process (the open-files limit, ports in use) is New's to find;
// it places those errors at their settings too.
func Preflight(cfg *config.Config) (problems, warnings config.Problems) {
	pf := preflight(cfg)
	problems = append(problems, pf.policy...)
	problems = append(problems, place(cfg, pf.general)...)
	for _, p := range cfg.Programs {
		if p.Autostart {
			problems = append(problems, place(cfg, pf.programs[p.Name])...)
		} else {
			warnings = append(warnings, place(cfg, pf.programs[p.Name])...)
		}
	}
	return problems, warnings
}

// reloadPreflight is Preflight for a reload from old to next: it refuses
// only what the reload would put in force — the policy, and programs it
// adds or changes that start by themselves. The rest (restart-only
// settings, programs it leaves alone) cannot stop a reload that does not
// apply them; they come back as warnings that the next start would fail.
func reloadPreflight(old, next *config.Config) (problems, warnings config.Problems) {
	pf := preflight(next)
	problems = append(problems, pf.policy...)
	warnings = append(warnings, place(next, pf.general)...)
	for _, p := range next.Programs {
		applied := p.Autostart && !reflect.DeepEqual(old.Program(p.Name), p)
		if applied {
			problems = append(problems, place(next, pf.programs[p.Name])...)
		} else {
			warnings = append(warnings, place(next, pf.programs[p.Name])...)
		}
	}
	return problems, warnings
}

// preflightFindings are Preflight's findings, sorted by what they are about.
type preflightFindings struct {
	policy   config.Problems    // placed at their rules already
	general  []error            // config.SettingErrors: guard, metrics, audit
	programs map[string][]error // by program name
}

func preflight(cfg *config.Config) preflightFindings {
	pf := preflightFindings{programs: map[string][]error{}}
	if _, err := guard.CompilePolicy(cfg.Policy); err != nil {
		pf.policy = append(pf.policy, config.Problem{Message: err.Error()})
	}
	add := func(path string, err error) {
		if err == nil {
			return
		}
		var se *config.SettingError
		if !errors.As(err, &se) {
			err = config.Setting(path, err)
		}
		pf.general = append(pf.general, err)
	}
	if g := cfg.Guard; g != nil {
		if t := g.TLS; t != nil {
			add("guard.tls", checkTLSPair(t.Cert, t.Key))
		}
		if g.LimitsStore != "" {
			add("guard.limits_store", guard.ValidateRedisOptions(guard.RedisOptionsFor(g)))
		}
	}
	if m := cfg.Metrics; m != nil && m.BearerTokenFile != "" {
		_, err := readBearerToken(m.BearerTokenFile)
		add("metrics.bearer_token_file", err)
	}
	if a := cfg.Audit; a != nil {
		if a.HMACKeyFile != "" {
			_, err := audit.ReadHMACKey(a.HMACKeyFile)
			add("audit.hmac_key_file", err)
		}
		add("audit.path", checkAuditPath(a.Path))
	}
	for _, p := range cfg.Programs {
		pf.programs[p.Name] = launcher.CheckProgram(p)
	}
	return pf
}

// place turns findings into problems at their settings.
func place(cfg *config.Config, errs []error) config.Problems {
	var ps config.Problems
	for _, e := range errs {
		if placed, ok := cfg.Place(e).(config.Problems); ok {
			ps = append(ps, placed...)
		}
	}
	return ps
}

// checkTLSPair loads the guard's certificate and key as the guard will,
// placing a problem at the file it is about.
func checkTLSPair(certFile, keyFile string) error {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return config.Setting("guard.tls.cert", fmt.Errorf("guard tls certificate: %w", err))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return config.Setting("guard.tls.key", fmt.Errorf("guard tls key: %w", err))
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		// crypto/tls names the certificate input in its messages about it;
		// anything else is about the key or the pair.
		at := "guard.tls.key"
		if strings.Contains(err.Error(), "certificate input") {
			at = "guard.tls.cert"
		}
		return config.Setting(at, fmt.Errorf("guard tls: certificate %s and key %s: %w", certFile, keyFile, err))
	}
	return nil
}

// checkAuditPath tells why the audit log cannot be at path: it is a
// directory, or what should be one of its directories is a file.
func checkAuditPath(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("audit path %s is a directory: write a file path such as %s", path, filepath.Join(path, "audit.log"))
	}
	// The nearest existing ancestor must be a directory (the writer
	// creates the missing ones). Below a file, stat says ENOTDIR.
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) && dir != filepath.Dir(dir) {
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
