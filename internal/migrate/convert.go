// Package migrate turns the tutorial's supervisord setup into a glmctl
// configuration (`glmctl import supervisor`): it reads supervisord's INI
// file, carries over what has a glmctl equivalent, moves the flags the
// tutorial gave vLLM but vLLM does not have (--limit, --log-format,
// --log-file) and its --api-key to the guard and the audit trail, binds
// vLLM to a unix socket behind the guard, and says — in a
// "# glmctl import: …" comment on the line, and in Notes — every setting it
// changed or could not carry over.
package migrate

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/glmctl/glmctl/internal/keys"
)

// Defaults of the generated config.
const (
	DefaultSocket       = "/run/glmctl/vllm.sock"
	DefaultMetrics      = "127.0.0.1:9400"
	ImportedKeyName     = "imported-api-key"
	DefaultStartTimeout = "30m"
)

// Options are the inputs of Supervisor besides the supervisord file.
type Options struct {
	// KeysPath is where the new keys file will be written; the config's
	// guard.keys_file names it.
	KeysPath string
	// UIKeyPath is where the web UI's service key will be written; the UI
	// program's environment names it.
	UIKeyPath string
	// OldKeys is the tutorial's keys file (/etc/vllm/api_keys.json), merged
	// hashed into the new one; nil when there is none. OldKeysPath names it
	// in notes.
	OldKeys     []byte
	OldKeysPath string
	// LimitsPath is the limits file guard.limits_file references where it
	// is ("" for none). LimitsErr says why it could not be read here, if so.
	LimitsPath string
	LimitsErr  error
	// Socket is vLLM's unix socket (default DefaultSocket).
	Socket string
	// NewSecret makes new keys (default keys.NewSecret); tests inject a
	// deterministic one.
	NewSecret func() (string, error)
	// Now stamps created times (default time.Now).
	Now func() time.Time
}

// Result is a converted configuration.
type Result struct {
	HCL []byte
	// Notes explain, one per line, what changed, what was not carried over
	// and what to do next (the CLI prints them to stderr).
	Notes []string
	// Keys is the new keys file (hashed entries only).
	Keys *keys.File
	// UIKey is the web UI's service key, to be written to Options.UIKeyPath
	// ("" when no UI program was found).
	UIKey string
}

// program is one [program:x] section being converted.
type program struct {
	sec      *Section
	name     string
	args     []string
	vllm     bool
	ui       bool
	priority int
	notes    map[string][]string // attribute -> "# glmctl import:" comments
}

// rename makes the section's name a glmctl program name (letters, digits,
// ".", "_", "-", starting with a letter or digit): other characters become
// "-", and the change is noted.
func (p *program) rename() error {
	var b strings.Builder
	for _, r := range p.name {
		switch {
		case r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-'):
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
	}
	name := strings.TrimRight(b.String(), "-")
	switch {
	case name == "" || !isAlnum(name[0]):
		return fmt.Errorf("no usable program name in %q: name it with letters and digits", p.name)
	case name == "all":
		return errors.New(`"all" is reserved in glmctl (glmctl start all means every program): rename the program`)
	case name != p.name:
		p.note("name", "renamed from %q: glmctl program names are letters, digits, \".\", \"_\" and \"-\"", p.name)
		p.name = name
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func (p *program) note(attr, format string, args ...any) {
	p.notes[attr] = append(p.notes[attr], fmt.Sprintf(format, args...))
}

// vllmFlags is what the guard, the audit trail and the log take over from
// the vLLM command line.
type vllmFlags struct {
	apiKeys          []string
	limit            int
	logFile, logFmt  string
	logLevel         string
	host, port       string
	hostSet, portSet bool
	tp               int
	removed          []string
}

// Supervisor converts a supervisord configuration.
func Supervisor(src []byte, filename string, opts Options) (*Result, error) {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.NewSecret == nil {
		opts.NewSecret = keys.NewSecret
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	secs, err := ParseINI(src, filename)
	if err != nil {
		return nil, err
	}
	res := &Result{Keys: &keys.File{}}
	notef := func(format string, args ...any) { res.Notes = append(res.Notes, fmt.Sprintf(format, args...)) }
	var progs []*program
	for _, s := range secs {
		name, ok := strings.CutPrefix(s.Name, "program:")
		if !ok {
			notef("%s:%d: section [%s] not carried over (glmctl is the supervisor; only [program:x] sections convert)", filename, s.Line, s.Name)
			continue
		}
		p := &program{sec: s, name: strings.TrimSpace(name), priority: 999, notes: map[string][]string{}}
		if err := p.rename(); err != nil {
			return nil, fmt.Errorf("%s:%d: [%s]: %w", filename, s.Line, s.Name, err)
		}
		for _, q := range progs {
			if q.name == p.name {
				return nil, fmt.Errorf("%s:%d: [%s]: a second program named %q (the first is [%s] at line %d): rename one of them", filename, s.Line, s.Name, p.name, q.sec.Name, q.sec.Line)
			}
		}
		cmd, ok := s.Get("command")
		if !ok {
			return nil, fmt.Errorf("%s:%d: [%s] has no command", filename, s.Line, s.Name)
		}
		args, comment, err := SplitCommand(cmd.Value)
		if err != nil || len(args) == 0 {
			return nil, fmt.Errorf("%s:%d: [%s] command: %v", filename, cmd.Line, s.Name, errOr(err, "empty"))
		}
		if strings.TrimSpace(args[0]) == "" {
			return nil, fmt.Errorf("%s:%d: [%s] command: the executable (its first word) is empty", filename, cmd.Line, s.Name)
		}
		if cmd.Joined {
			p.note("command", "backslash continuations joined into one command (supervisord does not join them; the tutorial meant one line)")
		}
		for _, c := range append(cmd.Comments, comment) {
			if c != "" {
				p.note("command", "comment %q dropped from the command", c)
			}
		}
		p.args = args
		p.vllm = isVLLM(args)
		if pr, ok := s.Get("priority"); ok {
			if n, err := strconv.Atoi(pr.Value); err == nil {
				p.priority = n
			}
		}
		progs = append(progs, p)
	}
	if len(progs) == 0 {
		return nil, fmt.Errorf("%s: no [program:x] section to convert", filename)
	}
	var vp *program
	for _, p := range progs {
		if p.vllm {
			if vp != nil {
				notef("program %q also runs vLLM; only %q is put behind the guard", p.name, vp.name)
				p.vllm = false
				continue
			}
			vp = p
		}
	}
	var vf vllmFlags
	if vp != nil {
		vp.args, vf = takeVLLMFlags(vp.args)
		vp.args = append(vp.args, "--uds", opts.Socket)
		// VLLM_API_KEY in the environment is --api-key by another name: left
		// there, vLLM would refuse the guard (which never forwards a key).
		if v, ok := vp.sec.Get("environment"); ok {
			if env, err := ParseEnv(v.Value); err == nil && env[vllmKeyEnv] != "" {
				vf.apiKeys = append(vf.apiKeys, env[vllmKeyEnv])
			}
		}
	} else {
		notef("no vLLM program found (a command with vllm.entrypoints.openai.api_server or \"vllm serve\"): no guard block written")
	}
	listen, metricsListen := "", DefaultMetrics
	if vp != nil {
		host, port := "0.0.0.0", "8000" // vLLM's defaults: every interface, port 8000
		if vf.hostSet {
			host = vf.host
		}
		if n, err := strconv.Atoi(vf.port); vf.portSet && err == nil && n > 0 && n <= 65535 {
			port = strconv.Itoa(n)
		} else if vf.portSet {
			notef("vLLM's --port %q is not a port number: the guard listens on port %s; change guard.listen if clients use another", vf.port, port)
		}
		if h, _, err := net.SplitHostPort(net.JoinHostPort(host, port)); err != nil || h != host || strings.ContainsAny(host, "/ ") {
			notef("vLLM's --host %q is not a host: the guard listens on every interface (0.0.0.0)", host)
			host = "0.0.0.0"
		}
		listen = net.JoinHostPort(host, port)
		if _, mport, _ := net.SplitHostPort(DefaultMetrics); mport == port {
			metricsListen = "127.0.0.1:9401"
		}
	}

	// Keys: the --api-key keys, then the tutorial's keys file, hashed.
	now := opts.Now().UTC().Truncate(time.Second)
	seen := map[string]string{} // sha256 -> name
	addKey := func(name, secret, role string) bool {
		h := keys.Hash(secret)
		if other, dup := seen[h]; dup {
			notef("key %q has the same secret as %q: kept once, as %q", name, other, other)
			return false
		}
		if res.Keys.Entry(name) != nil {
			notef("two keys named %q: the second was not carried over", name)
			return false
		}
		seen[h] = name
		res.Keys.Entries = append(res.Keys.Entries, &keys.Entry{Name: name, SHA256: h, Role: role, Created: now})
		return true
	}
	for i, k := range vf.apiKeys {
		name := ImportedKeyName
		if i > 0 {
			name = fmt.Sprintf("%s-%d", ImportedKeyName, i+1)
		}
		if addKey(name, k, keys.RoleUser) && isPlaceholder(k) {
			// A secret printed in a tutorial is known to everyone who read
			// it: carry the name over, but never as a working key.
			res.Keys.Entries[len(res.Keys.Entries)-1].Disabled = true
			notef("key %q is the tutorial's placeholder secret, known to every reader: imported disabled; give its users a real key with glmctl keys new NAME --file %s", name, opts.KeysPath)
		}
	}
	if opts.OldKeys != nil {
		old, _, err := keys.Parse(opts.OldKeys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", opts.OldKeysPath, err)
		}
		n := 0
		for _, e := range old.Entries {
			secret := e.Clear
			if secret == "" {
				if res.Keys.Entry(e.Name) != nil || seen[e.SHA256] != "" {
					notef("key %q from %s not carried over: name or secret already taken", e.Name, opts.OldKeysPath)
					continue
				}
				c := *e
				seen[e.SHA256] = e.Name
				res.Keys.Entries = append(res.Keys.Entries, &c)
				n++
				continue
			}
			if addKey(e.Name, secret, e.Role) {
				n++
			}
		}
		notef("%d key(s) from %s merged into %s, stored as SHA-256 only; every key there has role user (give admins their own key: glmctl keys new NAME --role admin)", n, opts.OldKeysPath, opts.KeysPath)
	}

	// The web UI: the first other program that points at the API.
	uiBase := ""
	if listen != "" {
		h, port, _ := net.SplitHostPort(listen)
		if h == "0.0.0.0" || h == "::" || h == "" {
			h = "127.0.0.1"
		}
		uiBase = "http://" + net.JoinHostPort(h, port) + "/v1"
	}
	var ui *program
	for _, p := range progs {
		if p == vp || ui != nil || vp == nil {
			continue
		}
		if i := flagIndex(p.args, "--api-base"); i >= 0 || strings.Contains(strings.ToLower(p.name), "ui") {
			ui = p
			p.ui = true
			if i >= 0 {
				old := flagValue(p.args, i)
				p.args = setFlag(p.args, i, "--api-base", uiBase)
				if old == uiBase {
					p.note("command", "--api-base %s now reaches the guard, which checks the key, the limits and audits", uiBase)
				} else {
					p.note("command", "--api-base %s changed to the guard, %s", old, uiBase)
				}
			}
		}
	}
	if ui != nil {
		secret, err := opts.NewSecret()
		if err != nil {
			return nil, err
		}
		name := ui.name + "-service"
		if !addKey(name, secret, keys.RoleUser) {
			return nil, fmt.Errorf("cannot add the web UI's service key %q", name)
		}
		res.UIKey = secret
		notef("program %q gets its own key %q (secret in %s, mode 0600, named by OPENAI_API_KEY_FILE in its env): make the UI send it as Authorization: Bearer", ui.name, name, opts.UIKeyPath)
	}

	w := &hclWriter{}
	w.line("# glmctl configuration converted from %s by glmctl import supervisor.", filename)
	w.line("# Lines marked \"glmctl import:\" were changed or not carried over: review them.")
	if vf.logLevel != "" {
		if level, ok := logLevel(vf.logLevel); ok {
			w.blank()
			w.open("log")
			w.note("from vLLM's --log-level %s (removed from the vLLM command)", vf.logLevel)
			w.attr("level", hstr(level))
			w.close()
		} else {
			notef("vLLM's --log-level %q is not a level: glmctl logs at info", vf.logLevel)
		}
	}
	if vp != nil {
		w.blank()
		w.open("metrics")
		w.note("added: Prometheus metrics on loopback (glmctl check --live probes /metrics here)")
		w.attr("listen", hstr(metricsListen))
		w.close()
	}
	sort.SliceStable(progs, func(i, j int) bool { return progs[i].priority < progs[j].priority })
	for _, p := range progs {
		w.blank()
		if err := writeProgram(w, p, vp, &vf, opts, notef); err != nil {
			return nil, err
		}
	}
	if vp != nil {
		w.blank()
		w.open("guard")
		w.note("vLLM's --host/--port: clients reach the guard here, vLLM only through the unix socket below")
		if h, _, _ := net.SplitHostPort(listen); h != "127.0.0.1" && h != "localhost" && h != "::1" {
			w.note("listening beyond loopback without TLS: add tls { cert = … key = … } or keep a TLS proxy in front")
		}
		w.attr("listen", hstr(listen))
		w.attr("upstream", hstr("unix://"+opts.Socket))
		w.attr("program", hstr(vp.name))
		w.note("new file, hashed keys only: vLLM's --api-key and the tutorial's keys file merged")
		w.attr("keys_file", hstr(opts.KeysPath))
		if opts.LimitsPath != "" {
			w.note("the tutorial's per-key limits, used where they are (nothing read them before)")
			w.attr("limits_file", hstr(opts.LimitsPath))
			if opts.LimitsErr != nil {
				notef("limits file %s: %v: create it there (glmctl loads the tutorial's format) or remove guard.limits_file", opts.LimitsPath, opts.LimitsErr)
			}
		}
		if vf.limit > 0 {
			w.open("global")
			w.note("vLLM's --limit %d (vLLM has no such flag; argparse may take it for another): now a real global limit", vf.limit)
			w.attr("rpm", strconv.Itoa(vf.limit))
			w.close()
		}
		w.close()
		w.blank()
		w.open("audit")
		path := "/var/log/glmctl/audit.log"
		switch {
		case vf.logFile != "" && filepath.IsAbs(vf.logFile):
			w.note("from vLLM's --log-file (not a vLLM flag): one JSON line per request, hash-chained")
			path = vf.logFile
		case vf.logFile != "":
			w.note("vLLM's --log-file %s (not a vLLM flag) is relative: the audit log is at %s instead; one JSON line per request, hash-chained", vf.logFile, path)
			notef("vLLM's --log-file %s is relative: the audit log is at %s", vf.logFile, path)
		default:
			w.note("added: one JSON line per request, hash-chained")
		}
		w.attr("path", hstr(path))
		w.open("rotate")
		w.note("glmctl rotates the audit log itself: remove any logrotate rule for it (copytruncate loses records)")
		w.attr("daily", "true")
		w.attr("keep", "30")
		w.close()
		w.close()
		if vf.logFmt != "" && vf.logFmt != "json" {
			notef("vLLM's --log-format %s dropped: audit records are JSON lines", vf.logFmt)
		}
	}
	res.HCL = []byte(w.b.String())
	return res, nil
}

// logLevel maps a vLLM (Python logging) level to glmctl's.
func logLevel(v string) (string, bool) {
	switch l := strings.ToLower(strings.TrimSpace(v)); l {
	case "trace", "debug", "info", "warn", "error":
		return l, true
	case "warning":
		return "warn", true
	case "critical", "fatal":
		return "error", true
	}
	return "", false
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// isVLLM reports whether a command runs vLLM's OpenAI server.
func isVLLM(args []string) bool {
	for i, a := range args {
		if a == "vllm.entrypoints.openai.api_server" {
			return true
		}
		if (a == "vllm" || strings.HasSuffix(a, "/vllm")) && i+1 < len(args) && args[i+1] == "serve" {
			return true
		}
	}
	return false
}

// takeVLLMFlags removes the flags the guard, audit and log take over.
func takeVLLMFlags(args []string) ([]string, vllmFlags) {
	var f vllmFlags
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, inline, hasInline := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "--") {
			out = append(out, a)
			continue
		}
		values := func(many bool) []string {
			if hasInline {
				return []string{inline}
			}
			var vs []string
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				vs = append(vs, args[i])
				if !many {
					break
				}
			}
			return vs
		}
		one := func() string {
			if vs := values(false); len(vs) > 0 {
				return vs[0]
			}
			return ""
		}
		switch name {
		case "--api-key":
			f.apiKeys = append(f.apiKeys, values(true)...)
			f.removed = append(f.removed, "--api-key")
		case "--limit":
			f.limit, _ = smallInt(one())
			f.removed = append(f.removed, "--limit")
		case "--log-file":
			f.logFile = one()
			f.removed = append(f.removed, "--log-file")
		case "--log-format":
			f.logFmt = one()
			f.removed = append(f.removed, "--log-format")
		case "--log-level":
			f.logLevel = one()
			f.removed = append(f.removed, "--log-level")
		case "--host":
			f.host, f.hostSet = one(), true
			f.removed = append(f.removed, "--host")
		case "--port":
			f.port, f.portSet = one(), true
			f.removed = append(f.removed, "--port")
		case "--uds":
			one()
			f.removed = append(f.removed, "--uds")
		default:
			if name == "--tensor-parallel-size" {
				v := inline
				if !hasInline && i+1 < len(args) {
					v = args[i+1]
				}
				f.tp, _ = strconv.Atoi(v)
			}
			out = append(out, a)
		}
	}
	return out, f
}

func flagIndex(args []string, name string) int {
	for i, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return i
		}
	}
	return -1
}

func flagValue(args []string, i int) string {
	if _, v, ok := strings.Cut(args[i], "="); ok {
		return v
	}
	if i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func setFlag(args []string, i int, name, value string) []string {
	out := append([]string{}, args...)
	if strings.Contains(out[i], "=") || i+1 >= len(out) {
		out[i] = name + "=" + value
		return out
	}
	out[i+1] = value
	return out
}

// isPlaceholder reports whether an --api-key value is a tutorial's
// placeholder ("sk-your-secure-api-key-here", "change-me", …) rather than a
// secret someone chose.
func isPlaceholder(k string) bool {
	l := strings.ToLower(k)
	for _, w := range []string{"your-", "your_", "key-here", "changeme", "change-me", "change_me", "example", "placeholder"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// vllmKeyEnv is the environment variable vLLM reads as its --api-key.
const vllmKeyEnv = "VLLM_API_KEY"
