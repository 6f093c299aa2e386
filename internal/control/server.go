package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Server serves the control API on a unix socket.
type Server struct {
	path    string
	backend Backend
	logger  hclog.Logger
	ln      net.Listener
	srv     *http.Server
}

// NewServer prepares a server for the socket at path.
func NewServer(path string, backend Backend, logger hclog.Logger) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{path: path, backend: backend, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("POST /v1/programs/{action}", s.handleAction)
	mux.HandleFunc("GET /v1/logs", s.handleLogs)
	mux.HandleFunc("POST /v1/reload", s.handleReload)
	mux.HandleFunc("POST /v1/audit/reopen", s.handleReopen)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Listen creates the socket (mode 0600, its directory 0700 when created).
// A stale socket left by a dead daemon is replaced; a live one is an error.
func (s *Server) Listen() error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	if _, err := os.Stat(s.path); err == nil {
		if c, err := net.DialTimeout("unix", s.path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("control socket %s: another glmctl daemon is already running", s.path)
		}
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	// Bind inside a fresh 0700 directory, chmod, then rename into place: a
	// chmod right after a bind at the final path would leave a moment in
	// which anyone could connect (and a process-wide umask would race with
	// other goroutines creating files).
	tmpDir, err := os.MkdirTemp(dir, ".sock")
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	s.ln = ln
	return nil
}

// Run serves until ctx is cancelled, then removes the socket.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("control socket: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutCtx); err != nil {
		// `logs -f` and waiting actions are still connected: cut them off
		// rather than leave their handlers running after Run returns.
		_ = s.srv.Close()
	}
	_ = os.Remove(s.path)
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrNotFound) {
		code = http.StatusNotFound
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.backend.Status(r.URL.Query()["name"]...)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	var req ProgramsRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxWait)
	defer cancel()
	var err error
	action := r.PathValue("action")
	switch action {
	case "start":
		err = s.backend.Start(ctx, req.Wait, req.Names...)
	case "stop":
		err = s.backend.Stop(ctx, req.Wait, req.Names...)
	case "restart":
		err = s.backend.Restart(ctx, req.Wait, req.Names...)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown action " + strconv.Quote(action)})
		return
	}
	s.logger.Info("control command", "action", action, "programs", req.Names, "ok", err == nil)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionReply{OK: true})
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	n, _ := strconv.Atoi(q.Get("n"))
	if n <= 0 {
		n = 100
	}
	lines, err := s.backend.Tail(name, n)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if q.Get("follow") == "" {
		return
	}
	ch, err := s.backend.Follow(r.Context(), name)
	if err != nil {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for l := range ch {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return
		}
		_ = rc.Flush()
	}
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if err := s.backend.Reload(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionReply{OK: true})
}

func (s *Server) handleReopen(w http.ResponseWriter, r *http.Request) {
	if err := s.backend.AuditReopen(); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionReply{OK: true})
}
