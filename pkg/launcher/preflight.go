package launcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/glmctl/glmctl/internal/config"
)

// CheckProgram checks what p names outside the config the way a start
// uses it — its user, its working directory, its command, its health
// check's command and its log file —
// and returns each problem as a config.SettingError at its setting. A
// program that fails here would only go FATAL at every start.
func CheckProgram(p *config.Program) []error {
	at := func(attr string, format string, args ...any) error {
		return config.Setting("program."+p.Name+"."+attr, fmt.Errorf(format, args...))
	}
	var errs []error
	if p.User != "" {
		if euid := geteuid(); euid != 0 {
			// Setting a user's uid, gid and groups takes root
			// (CAP_SETUID, CAP_SETGID); the spawn would fail with EPERM.
			errs = append(errs, at("user", "program %q runs as user %q, and only root can start a program as a user (glmctl runs as uid %d): run glmctl as root, as the systemd unit does, or remove user", p.Name, p.User, euid))
		} else if _, err := user.Lookup(p.User); err != nil {
			var unk user.UnknownUserError
			if errors.As(err, &unk) {
				errs = append(errs, at("user", "program %q: user %q does not exist: create it (useradd --system %s) or name an existing user", p.Name, p.User, p.User))
			} else {
				errs = append(errs, at("user", "program %q: user %q: %v", p.Name, p.User, err))
			}
		}
	}
	if p.Directory != "" {
		if st, err := os.Stat(p.Directory); err != nil {
			errs = append(errs, at("directory", "program %q: directory %s: %v", p.Name, p.Directory, unwrapPathError(err)))
		} else if !st.IsDir() {
			errs = append(errs, at("directory", "program %q: directory %s is not a directory", p.Name, p.Directory))
		}
	}
	if len(p.Command) > 0 {
		if err := findCommand(p.Command[0], p.Directory, programPATH(p)); err != nil {
			errs = append(errs, at("command", "program %q: %v", p.Name, err))
		}
	}
	if h := p.Health; h != nil && len(h.Exec) > 0 {
		// The probe runs from glmctl itself (exec.Command): glmctl's PATH.
		if err := findCommand(h.Exec[0], p.Directory, os.Getenv("PATH")); err != nil {
			errs = append(errs, at("health.exec", "program %q: health check %v", p.Name, err))
		}
	}
	if p.Log.Path != "" {
		if st, err := os.Stat(p.Log.Path); err == nil && st.IsDir() {
			errs = append(errs, at("log.path", "program %q: log path %s is a directory: write a file path such as %s", p.Name, p.Log.Path, filepath.Join(p.Log.Path, p.Name+".log")))
		}
	}
	return errs
}

// geteuid is os.Geteuid (a variable for tests).
var geteuid = os.Geteuid

// programPATH is the PATH the program's command is looked up in: its env's,
// else glmctl's own.
func programPATH(p *config.Program) string {
	if v, ok := p.Env["PATH"]; ok {
		return v
	}
	return os.Getenv("PATH")
}

// findCommand finds name as the keeper will (resolveCommand), without
// touching this process's environment.
func findCommand(name, dir, path string) error {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) && dir != "" {
			name = filepath.Join(dir, name)
		}
		return executable(name)
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if executable(filepath.Join(d, name)) == nil {
			return nil
		}
	}
	return fmt.Errorf("command %q is not in PATH (%s): write its absolute path, install it, or set env { PATH = … }", name, path)
}

// executable tells why file cannot be run, or nil.
func executable(file string) error {
	st, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("command %s does not exist", file)
	case err != nil:
		return fmt.Errorf("command %s: %v", file, unwrapPathError(err))
	case st.IsDir():
		return fmt.Errorf("command %s is a directory", file)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("command %s is not executable: chmod +x it", file)
	}
	return nil
}
