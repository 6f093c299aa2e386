package migrate

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/glmctl/glmctl/internal/config"
)

// handled are the supervisord program keys writeProgram converts or
// explains; any other key is reported as not carried over.
var handled = map[string]bool{
	"command": true, "directory": true, "user": true, "environment": true,
	"autostart": true, "autorestart": true, "startsecs": true, "startretries": true,
	"stopsignal": true, "stopwaitsecs": true, "stopasgroup": true, "killasgroup": true,
	"stdout_logfile": true, "stdout_logfile_maxbytes": true, "stdout_logfile_backups": true,
	"redirect_stderr": true, "priority": true,
}

// writeProgram writes one program block.
func writeProgram(w *hclWriter, p, vp *program, vf *vllmFlags, opts Options, notef func(string, ...any)) error {
	s := p.sec
	get := func(k string) (string, bool) {
		v, ok := s.Get(k)
		return v.Value, ok
	}
	where := func(k string) string {
		v, _ := s.Get(k)
		return fmt.Sprintf("line %d", v.Line)
	}
	w.open("program " + hstr(p.name))
	for _, n := range p.notes["name"] {
		w.note("%s", n)
	}
	var dropped []string
	for _, st := range s.Settings {
		if !handled[st.Key] {
			dropped = append(dropped, fmt.Sprintf("%s=%s (line %d)", st.Key, st.Value, st.Line))
		}
	}
	for _, d := range dropped {
		w.note("%s not carried over: no glmctl equivalent", d)
		notef("[program:%s] %s not carried over", p.name, d)
	}
	if v, ok := get("stopasgroup"); ok {
		w.note("stopasgroup=%s dropped: glmctl always signals the whole process group and kills every descendant", v)
	}
	if v, ok := get("killasgroup"); ok {
		w.note("killasgroup=%s dropped: glmctl always kills the whole program, descendants included", v)
	}
	if p.vllm && len(vf.removed) > 0 {
		w.note("removed from the vLLM command: %s (glmctl's guard, audit and log do that now; vLLM has no --limit, --log-format or --log-file)", strings.Join(dedupe(vf.removed), ", "))
		w.note("added --uds %s: vLLM serves only on this socket, so nothing reaches it around the guard", opts.Socket)
	}
	for _, n := range p.notes["command"] {
		w.note("%s", n)
	}
	w.command(p.args)
	if v, ok := get("directory"); ok {
		if v != "" && !filepath.IsAbs(v) {
			// supervisord resolves it against its own working directory,
			// which glmctl cannot know; glmctl wants an absolute path.
			w.note("directory=%s not carried over: it is relative; write directory = \"/absolute/path\"", v)
			notef("[program:%s] directory=%s is relative: not carried over", p.name, v)
		} else {
			w.attr("directory", hstr(v))
		}
	}
	if v, ok := get("user"); ok {
		w.attr("user", hstr(v))
	}
	env := map[string]string{}
	if v, ok := get("environment"); ok {
		e, err := ParseEnv(v)
		if err != nil {
			return fmt.Errorf("[program:%s] %s: %w", p.name, where("environment"), err)
		}
		env = e
	}
	if _, ok := env[vllmKeyEnv]; ok && p.vllm {
		delete(env, vllmKeyEnv)
		w.note("%s removed from the environment: the guard checks keys now (it is in the new keys file, hashed) and vLLM, reached only through the guard, must not ask for one", vllmKeyEnv)
	}
	if p.ui {
		env["OPENAI_API_KEY_FILE"] = opts.UIKeyPath
		w.note("added OPENAI_API_KEY_FILE: this program's own key %q for the guard", p.name+"-service")
	}
	if len(env) > 0 {
		w.attr("env", hmap(env))
	}
	if p.vllm && vf.tp > maxGPUs {
		w.note("--tensor-parallel-size %d: more GPUs than a box holds; no gpus set: list the GPUs vLLM should use", vf.tp)
	} else if p.vllm && vf.tp > 0 {
		gpus := make([]int, vf.tp)
		for i := range gpus {
			gpus[i] = i
		}
		w.note("from --tensor-parallel-size %d: GPUs 0-%d (sets CUDA_VISIBLE_DEVICES; the preflight checks them): adjust if vLLM should use others", vf.tp, vf.tp-1)
		w.attr("gpus", hints(gpus))
	}
	if p.ui && vp != nil {
		if v, ok := get("priority"); ok {
			w.note("priority=%s: starts after %q as before, and now waits until it is healthy", v, vp.name)
		} else {
			w.note("added: starts once %q is healthy", vp.name)
		}
		w.attr("depends_on", hlist([]string{vp.name}))
	} else if v, ok := get("priority"); ok {
		w.note("priority=%s dropped: glmctl orders starts by depends_on", v)
	}
	if v, ok := get("autostart"); ok && isFalse(v) {
		w.attr("autostart", "false")
	}
	restart := ""
	switch v, ok := get("autorestart"); {
	case !ok, strings.EqualFold(v, "unexpected"):
		if p.vllm {
			w.note("autorestart=unexpected (supervisord's default) became always: vLLM can exit 0 when its engine dies")
			restart = "always"
		} else {
			w.note("autorestart=unexpected (supervisord's default): restarted after a non-zero exit (exitcodes not carried over)")
			restart = "on-failure"
		}
	case isTrue(v):
		restart = "always"
	case isFalse(v):
		restart = "never"
	default:
		w.note("autorestart=%s not understood: using always", v)
		restart = "always"
	}
	w.attr("restart", hstr(restart))
	if v, ok := get("startsecs"); ok {
		if p.vllm {
			w.note("startsecs=%s dropped: the health probe below decides when vLLM is ready", v)
		} else if d, ok := seconds(v, true); ok {
			w.attr("start_secs", hstr(d))
		} else {
			w.note("startsecs=%s not understood: glmctl's default start_secs is used", v)
		}
	}
	if v, ok := get("startretries"); ok {
		if n, ok := smallInt(v); ok {
			w.note("startretries=%d: glmctl gives up (FATAL) after %d failed starts within 60 s, with capped backoff", n, max(n, 1))
			w.attr("start_retries", strconv.Itoa(max(n, 1)))
		} else {
			w.note("startretries=%s not understood: glmctl's default start_retries is used", v)
		}
	}
	if p.vllm {
		w.note("added: the model load may take many minutes; refused connections until then mean still loading")
		w.attr("start_timeout", hstr(DefaultStartTimeout))
	}
	if v, ok := get("stopsignal"); ok {
		sig := strings.ToUpper(strings.TrimSpace(v))
		if !strings.HasPrefix(sig, "SIG") {
			sig = "SIG" + sig
		}
		if _, known := config.Signal(sig); known {
			w.attr("stop_signal", hstr(sig))
		} else {
			w.note("stopsignal=%s not understood: glmctl's default SIGTERM is used", v)
			notef("[program:%s] stopsignal=%s not understood: SIGTERM used", p.name, v)
		}
	}
	if v, ok := get("stopwaitsecs"); ok {
		if d, ok := seconds(v, false); ok {
			w.attr("stop_timeout", hstr(d))
		} else {
			w.note("stopwaitsecs=%s not understood: glmctl's default stop_timeout is used", v)
		}
	}
	if p.vllm {
		w.note("added: readiness and liveness through vLLM's /health on its socket")
		w.open("health")
		w.attr("http", hstr("http://localhost/health"))
		w.attr("unix_socket", hstr(opts.Socket))
		w.attr("interval", hstr("10s"))
		w.attr("timeout", hstr("5s"))
		w.attr("failures", "3")
		w.close()
	}
	writeLog(w, p, get, notef)
	w.close()
	return nil
}

// writeLog writes the log block from stdout_logfile and its siblings.
func writeLog(w *hclWriter, p *program, get func(string) (string, bool), notef func(string, ...any)) {
	path, ok := get("stdout_logfile")
	if v, rok := get("redirect_stderr"); rok && isTrue(v) {
		w.note("redirect_stderr=%s: glmctl always captures stdout and stderr together", v)
	} else {
		w.note("stdout and stderr are captured together (stderr_logfile is not carried over)")
	}
	switch {
	case !ok:
		return
	case strings.EqualFold(path, "NONE"):
		w.note("stdout_logfile=NONE: no log file (the last lines stay in glmctl logs %s)", p.name)
		return
	case strings.EqualFold(path, "AUTO"):
		w.note("stdout_logfile=AUTO not carried over: name a path in log { path = … }")
		notef("[program:%s] stdout_logfile=AUTO not carried over", p.name)
		return
	}
	if !filepath.IsAbs(path) {
		w.note("stdout_logfile=%s not carried over: it is relative; write log { path = \"/var/log/glmctl/%s.log\" }", path, p.name)
		notef("[program:%s] stdout_logfile=%s is relative: not carried over", p.name, path)
		return
	}
	w.open("log")
	w.attr("path", hstr(path))
	if v, ok := get("stdout_logfile_maxbytes"); ok {
		n, err := supervisorBytes(v)
		switch {
		case err != nil:
			w.note("stdout_logfile_maxbytes=%s not understood: default size used", v)
		case n == 0:
			w.note("stdout_logfile_maxbytes=0 (no rotation) became glmctl's default size")
		default:
			w.note("stdout_logfile_maxbytes=%s: supervisord's MB is 1024×1024 bytes, glmctl's MiB", v)
			w.attr("max_size", hstr(sizeString(n)))
		}
	}
	if v, ok := get("stdout_logfile_backups"); ok {
		if n, ok := smallInt(v); ok && n > 0 {
			w.attr("keep", strconv.Itoa(n))
		} else if !ok {
			w.note("stdout_logfile_backups=%s not understood: glmctl's default keep is used", v)
		}
	}
	w.close()
}

// smallInt reads a whole number from 0 to 2³¹-1, the range of a glmctl
// config's integers.
func smallInt(v string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > 1<<31-1 {
		return 0, false
	}
	return n, true
}

// maxGPUs bounds the gpus list made from --tensor-parallel-size.
const maxGPUs = 1024

// seconds turns supervisord's whole seconds into a Go duration ("90s"):
// zero only when zeroOK, never negative, never past what a duration holds.
func seconds(v string, zeroOK bool) (string, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n == 0 && !zeroOK || n > 1e9 {
		return "", false
	}
	return fmt.Sprintf("%ds", n), true
}

// supervisorBytes parses supervisord's byte sizes (KB, MB, GB are powers of 1024).
func supervisorBytes(v string) (int64, error) {
	v = strings.ToUpper(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}} {
		if n, ok := strings.CutSuffix(v, u.s); ok {
			v, mult = n, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
}

func sizeString(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "1":
		return true
	}
	return false
}

func isFalse(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "no", "off", "0":
		return true
	}
	return false
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
