package console

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
)

// routes builds the handler chain: security headers around one mux; every
// route but sign-in and the assets needs a session.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /assets/{file}", s.serveAsset)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)

	mux.Handle("GET /{$}", s.page(s.overview))
	mux.Handle("GET /logs", s.page(s.logsPage))
	mux.Handle("GET /keys", s.page(s.keysPage))
	mux.Handle("GET /keys/secret", s.page(s.secretPage))
	mux.Handle("GET /audit", s.page(s.auditPage))
	mux.Handle("GET /live", s.live(s.liveParts))
	mux.Handle("GET /live/logs", s.live(s.followLogs))

	mux.Handle("POST /logout", s.action(s.logout))
	mux.Handle("POST /programs/{verb}", s.action(s.programAction))
	mux.Handle("POST /reload", s.action(s.reload))
	mux.Handle("POST /keys/create", s.action(s.keyCreate))
	mux.Handle("POST /keys/rotate", s.action(s.keyRotate))
	mux.Handle("POST /keys/revoke", s.action(s.keyRevoke))
	mux.Handle("POST /audit/verify", s.action(s.auditVerify))
	return s.headers(mux)
}

// sessionHandler is a handler that runs for a signed-in admin.
type sessionHandler func(w http.ResponseWriter, r *http.Request, sess *session)

// authenticate finds the request's session and checks that its key still
// opens as an admin key; a session whose key no longer does is ended (and
// that end recorded). touch: this request is a page view (idle expiry).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, touch bool) (*session, error) {
	now := s.now()
	id := s.sessionID(r)
	sess, err := s.sessions.get(id, now)
	if err != nil {
		if id != "" {
			s.clearSessionCookie(w)
		}
		return nil, err
	}
	if err := s.checkKey(sess, now); err != nil {
		s.sessions.end(id)
		s.clearSessionCookie(w)
		s.record(r, sess, "console.session_ended", sess.name, err)
		return nil, fmt.Errorf("%w: %w", errKeyRefused, err)
	}
	if touch {
		s.sessions.touch(sess, now)
	}
	return sess, nil
}

// errKeyRefused wraps why a session's key no longer opens.
var errKeyRefused = errors.New("the admin key of this session no longer works")

// signInAgain sends a browser to the sign-in page, saying why.
func (s *Server) signInAgain(w http.ResponseWriter, r *http.Request, err error) {
	why := "signin"
	switch {
	case errors.Is(err, errExpired):
		why = "expired"
	case errors.Is(err, errKeyRefused):
		why = "refused"
	}
	http.Redirect(w, r, "/login?why="+why, http.StatusSeeOther)
}

// page wraps a GET page.
func (s *Server) page(h sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.authenticate(w, r, true)
		if err != nil {
			s.signInAgain(w, r, err)
			return
		}
		h(w, r, sess)
	})
}

// live wraps the endpoints the script polls or streams: no idle refresh, and
// 401 instead of a redirect.
func (s *Server) live(h sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.authenticate(w, r, false)
		if err != nil {
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "signed out", http.StatusUnauthorized)
			return
		}
		h(w, r, sess)
	})
}

// action wraps a POST: same origin, a session, and its CSRF token.
func (s *Server) action(h sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := sameOrigin(r); err != nil {
			s.fail(w, r, nil, http.StatusForbidden, "This request did not come from the console's own page, so it was refused.")
			return
		}
		sess, err := s.authenticate(w, r, true)
		if err != nil {
			s.signInAgain(w, r, err)
			return
		}
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, sess, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !validCSRF(r, sess) {
			s.fail(w, r, sess, http.StatusForbidden, "The form is stale or was not made by this console; reload the page and try again.")
			return
		}
		h(w, r, sess)
	})
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if sess, err := s.authenticate(w, r, false); err == nil && sess != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	v := &view{Title: "Sign in"}
	switch r.URL.Query().Get("why") {
	case "expired":
		v.Flash = "Your session expired; sign in again."
	case "refused":
		v.Flash, v.FlashError = "Your admin key no longer works (revoked, expired or rotated out); sign in with a valid one.", true
	case "out":
		v.Flash = "Signed out."
	}
	if s.opts.Backend.Keys() == nil {
		v.Flash, v.FlashError = "No keys file is in force, so nobody can sign in: configure guard.keys_file with an admin key (glmctl keys new NAME --role admin).", true
	}
	s.render(w, r, http.StatusOK, "login", v)
}

// loginFailed is the one message for every refused key: it tells nothing
// about which keys exist.
const loginFailed = "Sign-in failed: that is not a valid admin key."

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		s.fail(w, r, nil, http.StatusForbidden, "This request did not come from the console's own page, so it was refused.")
		return
	}
	now := s.now()
	v := &view{Title: "Sign in"}
	if ok, wait := s.logins.allow(limitKey(clientAddr(r)), now); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		v.Flash, v.FlashError = "Too many sign-in attempts from your address; wait a minute and try again.", true
		s.record(r, nil, "console.login", "", errors.New("too many attempts"))
		s.render(w, r, http.StatusTooManyRequests, "login", v)
		return
	}
	secret := r.PostFormValue("key")
	var k *keys.Key
	var err error
	if set := s.opts.Backend.Keys(); set == nil {
		err = errors.New("no keys file in force")
	} else {
		k, err = set.Lookup(secret, now)
	}
	if err == nil && !k.IsAdmin() {
		err = errors.New("not an admin key")
	}
	if err != nil {
		target := ""
		if k != nil {
			target = k.Name // a known key (disabled, expired, not admin): say who tried
		}
		s.record(r, nil, "console.login", target, err)
		v.Flash, v.FlashError = loginFailed, true
		s.render(w, r, http.StatusUnauthorized, "login", v)
		return
	}
	if old := s.sessionID(r); old != "" {
		s.sessions.end(old) // never keep a session id across sign-in
	}
	id, sess := s.sessions.create(k, secret, now)
	s.setSessionCookie(w, id)
	s.record(r, sess, "console.login", k.Name, nil)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	s.sessions.end(s.sessionID(r))
	s.clearSessionCookie(w)
	s.record(r, sess, "console.logout", sess.name, nil)
	http.Redirect(w, r, "/login?why=out", http.StatusSeeOther)
}

// fail renders an error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, code int, msg string) {
	v := s.newView(r, sess, "Error")
	v.Flash, v.FlashError = msg, true
	s.render(w, r, code, "error", v)
}

// done ends an action: the message goes to the next page, and the browser
// to the page it came from.
func (s *Server) done(w http.ResponseWriter, r *http.Request, sess *session, back, msg string, err error) {
	if err != nil {
		s.sessions.setFlash(sess, msg+": "+err.Error(), true)
	} else {
		s.sessions.setFlash(sess, msg, false)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// timeout bounds an action's call into the daemon.
const actionTimeout = 30 * time.Second
