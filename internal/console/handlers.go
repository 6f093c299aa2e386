package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/glmctl/glmctl/internal/control"
)

func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	v := s.newView(r, sess, "Overview")
	s.fill(v, "programs", "gpus", "guard", "config")
	s.render(w, r, http.StatusOK, "overview", v)
}

// logsView is a program's log tail.
type logsView struct {
	Program  string
	Programs []string
	Lines    []string
	N        int
	Follow   bool
	Err      string
}

// maxTail bounds the lines a log page shows (the daemon keeps 1000).
const maxTail = 1000

func (s *Server) logsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	v := s.newView(r, sess, "Logs")
	q := r.URL.Query()
	lv := &logsView{Program: q.Get("program"), N: 200, Follow: q.Get("follow") == "1"}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n > 0 {
		lv.N = min(n, maxTail)
	}
	st, err := s.opts.Backend.Status()
	if err == nil {
		for _, p := range st.Programs {
			lv.Programs = append(lv.Programs, p.Name)
		}
	}
	if lv.Program == "" && len(lv.Programs) > 0 {
		lv.Program = lv.Programs[0]
	}
	if lv.Program != "" {
		if !slices.Contains(lv.Programs, lv.Program) {
			s.fail(w, r, sess, http.StatusNotFound, fmt.Sprintf("No program is named %q.", lv.Program))
			return
		}
		lv.Lines, err = s.opts.Backend.Tail(lv.Program, lv.N)
		if err != nil {
			lv.Err = err.Error()
		}
	}
	v.Logs = lv
	v.Title = "Logs · " + lv.Program
	s.render(w, r, http.StatusOK, "logs", v)
}

// liveParts answers the script's poll: {"parts": {"programs": "<html>", …}}
// for the sections named by ?part=.
func (s *Server) liveParts(w http.ResponseWriter, r *http.Request, sess *session) {
	var parts []string
	for _, p := range r.URL.Query()["part"] {
		if liveParts[p] && !slices.Contains(parts, p) {
			parts = append(parts, p)
		}
	}
	v := &view{Now: s.now(), User: sess.name, CSRF: sess.csrf}
	s.fill(v, parts...)
	out := struct {
		Parts map[string]string `json:"parts"`
		At    time.Time         `json:"at"`
	}{Parts: map[string]string{}, At: v.Now.UTC()}
	for _, p := range parts {
		html, err := s.renderPart(p, v)
		if err != nil {
			s.log.Error("console: render live part", "part", p, "error", err)
			http.Error(w, "render failed", http.StatusInternalServerError)
			return
		}
		out.Parts[p] = html
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// recheckEvery is how often a log stream checks that its session is still
// valid (signed out, expired, key revoked: the stream ends).
const recheckEvery = 5 * time.Second

// followLogs streams a program's new output lines as server-sent events.
func (s *Server) followLogs(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.URL.Query().Get("program")
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	lines, err := s.opts.Backend.Follow(ctx, name)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, control.ErrNotFound) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, ": following "+strings.ReplaceAll(name, "\n", "")+"\n\n")
	fl.Flush()
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	id := s.sessionID(r)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cur, err := s.sessions.get(id, s.now())
			if err != nil || cur != sess || s.checkKey(sess, s.now()) != nil {
				_, _ = fmt.Fprint(w, "event: end\ndata: signed out\n\n")
				fl.Flush()
				return
			}
		case line, ok := <-lines:
			if !ok {
				_, _ = fmt.Fprint(w, "event: end\ndata: stream ended\n\n")
				fl.Flush()
				return
			}
			line = strings.NewReplacer("\r", "", "\n", " ").Replace(line)
			if _, err := fmt.Fprintf(w, "data: %s\n\n", line); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// confirmView is the no-JavaScript confirmation step of an action: the same
// form again, with confirm=yes.
type confirmView struct {
	Question string
	Detail   string
	Action   string // the form's path
	Button   string
	Danger   bool
	Fields   []field // the form's other fields, carried as hidden inputs
	Back     string
}

type field struct{ Name, Value string }

// confirmed reports whether the action's form was confirmed; if not, it
// renders the confirmation page and the caller returns.
func (s *Server) confirmed(w http.ResponseWriter, r *http.Request, sess *session, c confirmView) bool {
	if r.PostFormValue("confirm") == "yes" {
		return true
	}
	c.Action = r.URL.Path
	for name, vals := range r.PostForm {
		if name == "csrf" || name == "confirm" {
			continue
		}
		for _, val := range vals {
			c.Fields = append(c.Fields, field{name, val})
		}
	}
	slices.SortFunc(c.Fields, func(a, b field) int { return strings.Compare(a.Name, b.Name) })
	if c.Back == "" {
		c.Back = "/"
	}
	v := s.newView(r, sess, "Confirm")
	v.Confirm = &c
	s.render(w, r, http.StatusOK, "confirm", v)
	return false
}

// back returns the form's "back" page when it is one of the console's own
// paths, else def.
func back(r *http.Request, def string) string {
	b := r.PostFormValue("back")
	u, err := url.Parse(b)
	if b == "" || err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(b, "//") {
		return def
	}
	return u.RequestURI()
}

var programVerbs = map[string]string{"start": "Start", "stop": "Stop", "restart": "Restart"}

func (s *Server) programAction(w http.ResponseWriter, r *http.Request, sess *session) {
	verb := r.PathValue("verb")
	title, ok := programVerbs[verb]
	name := r.PostFormValue("program")
	if !ok || name == "" {
		s.fail(w, r, sess, http.StatusNotFound, "Unknown action.")
		return
	}
	if !s.confirmed(w, r, sess, confirmView{
		Question: fmt.Sprintf("%s %s?", title, name),
		Detail:   programDetail(verb, name),
		Button:   title + " " + name, Danger: verb != "start", Back: back(r, "/"),
	}) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	var err error
	switch verb {
	case "start":
		err = s.opts.Backend.Start(ctx, false, name)
	case "stop":
		err = s.opts.Backend.Stop(ctx, false, name)
	case "restart":
		err = s.opts.Backend.Restart(ctx, false, name)
	}
	s.record(r, sess, "console."+verb, name, err)
	s.done(w, r, sess, back(r, "/"), fmt.Sprintf("%s %s: requested", title, name), err)
}

func programDetail(verb, name string) string {
	switch verb {
	case "stop":
		return fmt.Sprintf("%s is stopped (its stop signal, then SIGKILL after its stop timeout) and stays stopped until started.", name)
	case "restart":
		return fmt.Sprintf("%s is stopped and started again; a model server is unavailable while it loads.", name)
	}
	return fmt.Sprintf("%s is started (with what it depends on).", name)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request, sess *session) {
	if !s.confirmed(w, r, sess, confirmView{
		Question: "Reload the configuration?",
		Detail:   "The file is read and checked whole: changed programs restart, removed ones stop, new ones start. A rejected reload changes nothing.",
		Button:   "Reload", Back: back(r, "/"),
	}) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	err := s.opts.Backend.Reload(ctx)
	s.record(r, sess, "console.reload", "config", err)
	msg := "Configuration reloaded"
	if err != nil {
		msg = "Reload rejected; the previous configuration stays in force"
	}
	s.done(w, r, sess, back(r, "/"), msg, err)
}
