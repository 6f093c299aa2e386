package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
)

// maxSessions bounds the session store; the oldest session goes first.
const maxSessions = 1024

// session is one signed-in browser. It lives only in the server's memory;
// the browser holds a random id whose SHA-256 is the store's key.
type session struct {
	name string // the admin key's name, for the audit trail
	// secret is the admin key given at sign-in, kept in memory only (never
	// logged or rendered) so that every request can look it up again in
	// the keys in force: revoked, expired or rotated-out keys end here.
	secret  string
	csrf    string // the form token of this session
	created time.Time
	seen    time.Time // last page view (live updates excluded)
	// flash is a one-shot message shown on the next page.
	flash      string
	flashError bool
	// newSecret is a key's new secret between the POST that made it and
	// the one GET that shows it (then it is dropped).
	newSecret *secretView
}

type sessions struct {
	ttl, idle time.Duration
	mu        sync.Mutex
	m         map[[sha256.Size]byte]*session
}

func newSessions(ttl, idle time.Duration) *sessions {
	return &sessions{ttl: ttl, idle: idle, m: map[[sha256.Size]byte]*session{}}
}

// randomToken returns 32 random bytes, base64url without padding.
func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("console: crypto/rand: " + err.Error()) // never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for the key and returns its id (for the cookie).
func (st *sessions) create(k *keys.Key, secret string, now time.Time) (string, *session) {
	id := randomToken()
	s := &session{name: k.Name, secret: secret, csrf: randomToken(), created: now, seen: now}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.m) >= maxSessions {
		st.evictOldestLocked()
	}
	st.m[sha256.Sum256([]byte(id))] = s
	return id, s
}

func (st *sessions) evictOldestLocked() {
	var oldest [sha256.Size]byte
	var at time.Time
	for k, s := range st.m {
		if at.IsZero() || s.created.Before(at) {
			oldest, at = k, s.created
		}
	}
	delete(st.m, oldest)
}

// Why a session is not (or no longer) valid.
var (
	errNoSession = errors.New("not signed in")
	errExpired   = errors.New("session expired")
)

// get returns the live session of id; an expired one is removed.
func (st *sessions) get(id string, now time.Time) (*session, error) {
	if id == "" {
		return nil, errNoSession
	}
	k := sha256.Sum256([]byte(id))
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.m[k]
	if s == nil {
		return nil, errNoSession
	}
	if st.expiredLocked(s, now) {
		delete(st.m, k)
		return nil, errExpired
	}
	return s, nil
}

func (st *sessions) expiredLocked(s *session, now time.Time) bool {
	return !now.Before(s.created.Add(st.ttl)) || !now.Before(s.seen.Add(st.idle))
}

// touch notes a page view (the idle expiry starts again).
func (st *sessions) touch(s *session, now time.Time) {
	st.mu.Lock()
	s.seen = now
	st.mu.Unlock()
}

// end removes the session of id.
func (st *sessions) end(id string) {
	st.mu.Lock()
	delete(st.m, sha256.Sum256([]byte(id)))
	st.mu.Unlock()
}

// endKey removes every session of the key named name and returns how many.
func (st *sessions) endKey(name string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for k, s := range st.m {
		if s.name == name {
			delete(st.m, k)
			n++
		}
	}
	return n
}

// purge drops expired sessions.
func (st *sessions) purge(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, s := range st.m {
		if st.expiredLocked(s, now) {
			delete(st.m, k)
		}
	}
}

// setFlash and takeFlash carry a message to the next page.
func (st *sessions) setFlash(s *session, msg string, isErr bool) {
	st.mu.Lock()
	s.flash, s.flashError = msg, isErr
	st.mu.Unlock()
}

func (st *sessions) takeFlash(s *session) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	msg, isErr := s.flash, s.flashError
	s.flash, s.flashError = "", false
	return msg, isErr
}

// putSecret keeps a new secret for the next GET /keys/secret;
// takeSecret hands it out once.
func (st *sessions) putSecret(s *session, sv *secretView) {
	st.mu.Lock()
	s.newSecret = sv
	st.mu.Unlock()
}

func (st *sessions) takeSecret(s *session) *secretView {
	st.mu.Lock()
	defer st.mu.Unlock()
	sv := s.newSecret
	s.newSecret = nil
	return sv
}

// count returns the number of sessions (tests).
func (st *sessions) count() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}

// cookieName is the session cookie's name: with TLS the __Host- prefix makes
// the browser refuse it unless Secure, host-only and Path=/.
func (s *Server) cookieName() string {
	if s.opts.TLS != nil {
		return "__Host-glmctl_console"
	}
	return "glmctl_console"
}

// setSessionCookie sets the session id; the browser drops it after the
// session's absolute lifetime, the server enforces both expiries itself.
func (s *Server) setSessionCookie(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: id, Path: "/", MaxAge: int(s.opts.SessionTTL / time.Second),
		HttpOnly: true, Secure: s.opts.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.opts.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) sessionID(r *http.Request) string {
	c, err := r.Cookie(s.cookieName())
	if err != nil {
		return ""
	}
	return c.Value
}

// checkKey looks the session's key up in the keys in force: it must still
// open, and still be an admin key of the same name.
func (s *Server) checkKey(sess *session, now time.Time) error {
	set := s.opts.Backend.Keys()
	if set == nil {
		return errors.New("no keys file in force")
	}
	k, err := set.Lookup(sess.secret, now)
	switch {
	case err != nil:
		return err
	case k.Name != sess.name:
		return errors.New("key renamed")
	case !k.IsAdmin():
		return errors.New("key no longer admin")
	}
	return nil
}

// loginLimiter bounds sign-in attempts per client address with GCRA: a
// burst of perMinute, then one every minute/perMinute.
type loginLimiter struct {
	every time.Duration // emission interval
	burst time.Duration // tolerance: (perMinute-1) × every
	mu    sync.Mutex
	tat   map[string]time.Time // theoretical arrival time per address
}

// maxLimitedClients bounds the limiter's memory; past it, attempts from new
// addresses are refused until old entries age out.
const maxLimitedClients = 100000

func newLoginLimiter(perMinute int) *loginLimiter {
	every := time.Minute / time.Duration(perMinute)
	return &loginLimiter{every: every, burst: time.Duration(perMinute-1) * every, tat: map[string]time.Time{}}
}

// allow takes one attempt for addr; false: too many, with the wait.
func (l *loginLimiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, ok := l.tat[addr]
	if !ok && len(l.tat) >= maxLimitedClients {
		return false, l.every
	}
	if tat.Before(now) {
		tat = now
	}
	if wait := tat.Sub(now) - l.burst; wait > 0 {
		return false, wait
	}
	l.tat[addr] = tat.Add(l.every)
	return true, 0
}

func (l *loginLimiter) purge(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, t := range l.tat {
		if !t.After(now) {
			delete(l.tat, a)
		}
	}
}

// clientAddr is the peer's IP address; proxies' headers are not trusted.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limitKey is the address sign-in attempts are counted against: the IPv4
// address, or the /64 of an IPv6 one (a host usually holds a whole /64).
func limitKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Is4() || ip.Is4In6() {
		return addr
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}
