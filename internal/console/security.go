package console

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// contentSecurityPolicy allows nothing but the console's own files: no
// inline script or style (charts are SVG markup styled by the stylesheet),
// no framing, forms posting only here.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'"

// maxFormBytes bounds a POST body (the forms are a few fields).
const maxFormBytes = 64 << 10

// headers sets the security headers on every response and bounds request
// bodies.
func (s *Server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		if s.opts.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// errCrossOrigin is why a POST from another origin is refused.
var errCrossOrigin = errors.New("cross-origin request refused")

// sameOrigin reports whether a state-changing request comes from a page of
// the console itself. Browsers that send Sec-Fetch-Site are judged by it
// alone (it survives Referrer-Policy no-referrer, under which a form's
// Origin is "null"); otherwise the Origin, else the Referer, must name this
// host. A request with none of the three is refused: every browser sends
// one of them with a POST.
func sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		if site == "same-origin" {
			return nil
		}
		return errCrossOrigin
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if hostOf(o) == strings.ToLower(r.Host) {
			return nil
		}
		return errCrossOrigin
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		if hostOf(ref) == strings.ToLower(r.Host) {
			return nil
		}
		return errCrossOrigin
	}
	return errCrossOrigin
}

// hostOf returns the lowercase host[:port] of an absolute http(s) URL, or "".
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Host)
}

// validCSRF compares the form's token with the session's in constant time.
func validCSRF(r *http.Request, sess *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}
