package console

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
)

func TestSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	check := func(t *testing.T, resp *http.Response) {
		t.Helper()
		want := map[string]string{
			"Content-Security-Policy": contentSecurityPolicy,
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s %s: %s = %q, want %q", resp.Request.Method, resp.Request.URL.Path, k, got, v)
			}
		}
		if resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("HSTS sent without TLS")
		}
	}
	for _, c := range []struct{ name, path string }{{"login", "/login"}, {"redirect", "/"}, {"asset", "/assets/console.js"}, {"missing", "/nope"}} {
		t.Run(c.name, func(t *testing.T) {
			resp, _ := h.get(c.path)
			check(t, resp)
		})
	}
	for _, csp := range []string{"default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "style-src 'self'"} {
		if !strings.Contains(contentSecurityPolicy, csp) {
			t.Errorf("CSP lacks %q", csp)
		}
	}
	if strings.Contains(contentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %s", contentSecurityPolicy)
	}

	t.Run("assets", func(t *testing.T) {
		for path, ctype := range map[string]string{"/assets/console.js": "text/javascript", "/assets/console.css": "text/css", "/assets/favicon.svg": "image/svg+xml"} {
			resp, body := h.get(path)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || body == "" {
				t.Errorf("%s: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			req, _ := http.NewRequest(http.MethodGet, h.ts.URL+path, nil)
			req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
			if r2, _ := h.do(req); r2.StatusCode != http.StatusNotModified {
				t.Errorf("%s with its ETag: %d, want 304", path, r2.StatusCode)
			}
		}
	})

	// Every page is free of inline script, inline style and event handler
	// attributes (the CSP would block them) and of any other origin.
	t.Run("no inline code", func(t *testing.T) {
		h.login("root")
		forbidden := regexp.MustCompile(`(?i)\sstyle=|\son[a-z]+=|<style|javascript:|https?://`)
		scripts := regexp.MustCompile(`(?i)<script[^>]*>[^<]*</script>|<script`)
		for _, path := range []string{"/", "/keys", "/audit", "/logs?program=vllm&follow=1", "/login"} {
			_, body := h.get(path)
			if m := forbidden.FindString(body); m != "" {
				t.Errorf("%s holds %q", path, m)
			}
			for _, tag := range scripts.FindAllString(body, -1) {
				if !regexp.MustCompile(`^<script src="/assets/console\.js\?v=[0-9a-f]+" defer></script>$`).MatchString(tag) {
					t.Errorf("%s holds a script other than the embedded file: %q", path, tag)
				}
			}
		}
	})
}

func TestSignInRequired(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/", "/keys", "/audit", "/logs"} {
		resp, _ := h.get(path)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("GET %s signed out: %d %s, want 303 to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, path := range []string{"/live?part=programs", "/live/logs?program=vllm"} {
		if resp, _ := h.get(path); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s signed out: %d, want 401", path, resp.StatusCode)
		}
	}
	resp, _ := h.post("/programs/restart", url.Values{"program": {"vllm"}, "confirm": {"yes"}, "csrf": {"x"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || h.b.restarts("vllm") != 0 {
		t.Errorf("POST restart signed out: %d, restarts %d; want a redirect and nothing done", resp.StatusCode, h.b.restarts("vllm"))
	}
}

func TestSignIn(t *testing.T) {
	h := newHarness(t)
	if err := keys.Update(h.b.keysFile, false, func(f *keys.File) error { _, err := f.Revoke("ops"); return err }); err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"unknown key":  "sk-this-key-does-not-exist-0000000000000",
		"user key":     h.secrets["alice"],
		"disabled key": h.secrets["ops"],
		"empty":        "",
	}
	for name, secret := range refused {
		t.Run(name, func(t *testing.T) {
			resp, body := h.post("/login", url.Values{"key": {secret}}, nil)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, loginFailed) {
				t.Errorf("%d, want 401 with the generic message\n%s", resp.StatusCode, body)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("a refused sign-in set cookies: %v", resp.Cookies())
			}
			if secret != "" && strings.Contains(body, secret) {
				t.Errorf("the page repeats the key")
			}
		})
	}
	t.Run("cross-origin", func(t *testing.T) {
		resp, _ := h.post("/login", url.Values{"key": {h.secrets["root"]}}, map[string]string{"Origin": "http://evil.example"})
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("%d, want 403 and no session", resp.StatusCode)
		}
	})
	t.Run("admin", func(t *testing.T) {
		resp, _ := h.post("/login", url.Values{"key": {h.secrets["root"]}}, nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d, want 303", resp.StatusCode)
		}
		var c *http.Cookie
		for _, x := range resp.Cookies() {
			if x.Name == "glmctl_console" {
				c = x
			}
		}
		if c == nil {
			t.Fatalf("no session cookie: %v", resp.Header["Set-Cookie"])
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" || c.MaxAge != 12*3600 {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, not Secure without TLS, Path=/, Max-Age 12h", c)
		}
		if len(c.Value) < 40 || strings.Contains(c.Value, h.secrets["root"]) {
			t.Errorf("cookie value %q: want a long random id", c.Value)
		}
		_, body := h.get("/")
		for _, want := range []string{`data-program="vllm"`, "RUNNING", "signed in as <strong id=\"user\">root</strong>"} {
			if !strings.Contains(body, want) {
				t.Errorf("overview lacks %q", want)
			}
		}
		if strings.Contains(body, h.secrets["root"]) {
			t.Errorf("the overview shows the admin key")
		}
		rec := h.findRecord("console.login")
		if rec.Key != "root" || rec.Error != "" {
			t.Errorf("login record %+v", rec)
		}
	})
	t.Run("failures audited", func(t *testing.T) {
		var named bool
		for _, r := range h.adminRecords() {
			if r.Action == "console.login" && r.Target == "ops" && strings.Contains(r.Error, "disabled") {
				named = true
			}
		}
		if !named {
			t.Errorf("the refused sign-in of the disabled admin key ops is not audited by name: %+v", h.adminRecords())
		}
	})
}

func TestSignInRateLimit(t *testing.T) {
	h := newHarness(t)
	for i := range 10 {
		if resp, _ := h.post("/login", url.Values{"key": {"sk-wrong"}}, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp, body := h.post("/login", url.Values{"key": {h.secrets["root"]}}, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || len(resp.Cookies()) != 0 {
		t.Fatalf("11th attempt (right key): %d Retry-After %q, want 429 and no session\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	h.clock.Advance(6 * time.Second) // one attempt back
	h.login("root")
	if resp, _ := h.post("/login", url.Values{"key": {"sk-wrong"}}, nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("attempt right after: %d, want 429", resp.StatusCode)
	}
	h.clock.Advance(time.Minute)
	for i := range 10 {
		if resp, _ := h.post("/login", url.Values{"key": {"sk-wrong"}}, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a minute later, attempt %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	if got := limitKey("2001:db8::1"); got != limitKey("2001:db8::ffff") || got == limitKey("2001:db8:0:1::1") {
		t.Errorf("IPv6 addresses are not limited per /64: %q", got)
	}
}

// wrongToken is token with its first character changed (never to itself:
// "x"+token[1:] was the token itself whenever it began with x).
func wrongToken(token string) string {
	c := byte('x')
	if token[0] == c {
		c = 'y'
	}
	return string(c) + token[1:]
}

func TestStateChangesNeedPOSTWithCSRFAndSameOrigin(t *testing.T) {
	h := newHarness(t)
	h.login("root")
	token := h.csrf()
	form := func(csrf string) url.Values {
		return url.Values{"program": {"vllm"}, "confirm": {"yes"}, "csrf": {csrf}}
	}
	cases := []struct {
		name    string
		csrf    string
		headers map[string]string
	}{
		{"no token", "", nil},
		{"wrong token", wrongToken(token), nil},
		{"another origin", token, map[string]string{"Origin": "http://evil.example"}},
		{"cross-site fetch metadata", token, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site fetch metadata", token, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"null origin", token, map[string]string{"Origin": "null"}},
		{"no origin at all", token, map[string]string{"Origin": ""}},
		{"foreign referer", token, map[string]string{"Origin": "", "Referer": "http://evil.example/x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, _ := h.post("/programs/restart", form(c.csrf), c.headers)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%d, want 403", resp.StatusCode)
			}
			if n := h.b.restarts("vllm"); n != 0 {
				t.Fatalf("vllm restarted %d times", n)
			}
		})
	}
	t.Run("GET does nothing", func(t *testing.T) {
		resp, _ := h.get("/programs/restart?program=vllm&confirm=yes&csrf=" + url.QueryEscape(token))
		if resp.StatusCode != http.StatusMethodNotAllowed || h.b.restarts("vllm") != 0 {
			t.Errorf("%d, restarts %d; want 405 and nothing done", resp.StatusCode, h.b.restarts("vllm"))
		}
	})
	t.Run("unconfirmed shows the confirmation", func(t *testing.T) {
		resp, body := h.post("/programs/restart", url.Values{"program": {"vllm"}, "csrf": {token}}, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Restart vllm?") ||
			!strings.Contains(body, `name="confirm" value="yes"`) || !strings.Contains(body, `name="program" value="vllm"`) {
			t.Errorf("%d, want the confirmation page\n%s", resp.StatusCode, body)
		}
		if h.b.restarts("vllm") != 0 {
			t.Errorf("restarted before confirmation")
		}
	})
	for name, headers := range map[string]map[string]string{
		"origin":          nil,
		"fetch metadata":  {"Sec-Fetch-Site": "same-origin", "Origin": "null"},
		"referer only":    {"Origin": "", "Referer": h.ts.URL + "/"},
		"origin, no meta": {"Origin": h.ts.URL},
	} {
		t.Run("accepted with "+name, func(t *testing.T) {
			before := h.b.restarts("vllm")
			resp, _ := h.post("/programs/restart", form(token), headers)
			if resp.StatusCode != http.StatusSeeOther || h.b.restarts("vllm") != before+1 {
				t.Fatalf("%d, restarts %d → %d; want 303 and one restart", resp.StatusCode, before, h.b.restarts("vllm"))
			}
		})
	}
	rec := h.findRecord("console.restart")
	if rec.Key != "root" || rec.Target != "vllm" || rec.Role != "admin" || rec.Client == "" {
		t.Errorf("restart record %+v: want key root, target vllm", rec)
	}
	_, body := h.get("/")
	if !strings.Contains(body, "Restart vllm: requested") {
		t.Errorf("no flash after the restart")
	}
}

func TestSessionExpiry(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		h := newHarness(t)
		h.login("root")
		h.clock.Advance(59 * time.Minute)
		if resp, _ := h.get("/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("after 59 min idle: %d", resp.StatusCode)
		}
		// Live updates neither need a page view nor keep a session alive.
		for range 11 {
			h.clock.Advance(5 * time.Minute)
			if resp, _ := h.get("/live?part=programs"); resp.StatusCode != http.StatusOK {
				t.Fatalf("live %s after the last page view: %d", h.clock.Now().Sub(time.Date(2026, 11, 25, 10, 59, 0, 0, time.UTC)), resp.StatusCode)
			}
		}
		h.clock.Advance(6 * time.Minute) // 61 min after the last page view
		if resp, _ := h.get("/live?part=programs"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("live after an hour without a page view: %d, want 401", resp.StatusCode)
		}
		if h.s.sessions.count() != 0 {
			t.Errorf("the expired session is still stored")
		}
		h.login("root")
		h.clock.Advance(61 * time.Minute)
		resp, _ := h.get("/")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?why=expired" {
			t.Errorf("page after an hour idle: %d %s, want 303 to /login?why=expired", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("absolute", func(t *testing.T) {
		h := newHarness(t)
		h.login("root")
		for elapsed := time.Duration(0); elapsed+50*time.Minute < 12*time.Hour; elapsed += 50 * time.Minute {
			h.clock.Advance(50 * time.Minute)
			if resp, _ := h.get("/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("active session at %s: %d", elapsed+50*time.Minute, resp.StatusCode)
			}
		}
		h.clock.Advance(30 * time.Minute) // 12h10m after sign-in
		resp, _ := h.get("/")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?why=expired" {
			t.Errorf("after 12h: %d %s, want 303 to /login?why=expired", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("sign-out", func(t *testing.T) {
		h := newHarness(t)
		h.login("root")
		token := h.csrf()
		resp, _ := h.post("/logout", url.Values{"csrf": {token}}, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?why=out" {
			t.Fatalf("sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if h.s.sessions.count() != 0 {
			t.Errorf("session kept after sign-out")
		}
		if resp, _ := h.get("/"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("after sign-out: %d, want 303", resp.StatusCode)
		}
		if rec := h.findRecord("console.logout"); rec.Key != "root" {
			t.Errorf("logout record %+v", rec)
		}
	})
}

func TestRevokedAdminKeyEndsSessions(t *testing.T) {
	edits := map[string]func(f *keys.File) error{
		"revoked": func(f *keys.File) error { _, err := f.Revoke("root"); return err },
		"rotated without grace": func(f *keys.File) error {
			s, _ := keys.NewSecret()
			return f.Rotate("root", s, time.Time{}, time.Now())
		},
		"no longer admin": func(f *keys.File) error { f.Entry("root").Role = keys.RoleUser; return nil },
		"removed":         func(f *keys.File) error { f.Remove("root"); return nil },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.login("root")
			token := h.csrf()
			if err := keys.Update(h.b.keysFile, false, edit); err != nil {
				t.Fatal(err)
			}
			resp, _ := h.get("/live?part=programs")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("live after the edit: %d, want 401", resp.StatusCode)
			}
			resp, _ = h.post("/programs/restart", url.Values{"program": {"vllm"}, "confirm": {"yes"}, "csrf": {token}}, nil)
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") || h.b.restarts("vllm") != 0 {
				t.Errorf("action after the edit: %d %s, restarts %d; want a redirect to sign-in and nothing done",
					resp.StatusCode, resp.Header.Get("Location"), h.b.restarts("vllm"))
			}
			if h.s.sessions.count() != 0 {
				t.Errorf("session kept")
			}
			if rec := h.findRecord("console.session_ended"); rec.Key != "root" || rec.Error == "" {
				t.Errorf("session end record %+v", rec)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		h := newHarness(t)
		exp := h.clock.Now().Add(30 * time.Minute)
		if err := keys.Update(h.b.keysFile, false, func(f *keys.File) error { f.Entry("root").Expires = exp; return nil }); err != nil {
			t.Fatal(err)
		}
		h.login("root")
		h.clock.Advance(31 * time.Minute)
		if resp, _ := h.get("/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?why=refused" {
			t.Errorf("after the key expired: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestSecureCookieWithTLS(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.TLS = &tls.Config{MinVersion: tls.VersionTLS12} })
	req := httptest.NewRequest(http.MethodPost, "https://console.example/login", strings.NewReader(url.Values{"key": {h.secrets["root"]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	w := httptest.NewRecorder()
	h.s.Handler().ServeHTTP(w, req)
	resp := w.Result()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%d", resp.StatusCode)
	}
	c := resp.Cookies()[0]
	if c.Name != "__Host-glmctl_console" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Domain != "" {
		t.Errorf("cookie %+v: want __Host- prefix, Secure, HttpOnly, SameSite=Strict, host-only", c)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("no HSTS with TLS")
	}
}

func TestKeyActions(t *testing.T) {
	h := newHarness(t)
	h.login("root")
	token := h.csrf()
	secretRe := regexp.MustCompile(`id="secret" type="text" readonly value="(sk-[A-Za-z0-9]+)"`)

	// The secret is shown once, on the GET the POST redirects to.
	secretOnce := func(t *testing.T, what string, form url.Values) string {
		t.Helper()
		resp, body := h.post(form.Get("path"), form, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/keys/secret" {
			t.Fatalf("%s: %d %s, want 303 to /keys/secret\n%s", what, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		resp, body = h.get("/keys/secret")
		m := secretRe.FindStringSubmatch(body)
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("%s: %d, no secret shown\n%s", what, resp.StatusCode, body)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("the secret page may be cached: %q", resp.Header.Get("Cache-Control"))
		}
		if resp, body := h.get("/keys/secret"); resp.StatusCode != http.StatusSeeOther || strings.Contains(body, m[1]) {
			t.Errorf("%s: the secret is shown a second time (%d)", what, resp.StatusCode)
		}
		return m[1]
	}
	bob := secretOnce(t, "create", url.Values{"path": {"/keys/create"}, "csrf": {token}, "name": {"bob"}, "role": {"user"},
		"models": {"glm-4.7-flash"}, "expires": {"30d"}, "confirm": {"yes"}})
	k, err := h.b.Keys().Lookup(bob, h.clock.Now())
	if err != nil || k.Name != "bob" || k.Role != keys.RoleUser || !k.AllowsModel("glm-4.7-flash") || k.AllowsModel("other") {
		t.Fatalf("the created key: %+v, %v", k, err)
	}
	if raw, _ := os.ReadFile(h.b.keysFile); strings.Contains(string(raw), bob) {
		t.Errorf("the keys file holds the secret in clear")
	}
	if rec := h.findRecord("console.key_create"); rec.Key != "root" || rec.Target != "bob" || rec.Error != "" {
		t.Errorf("create record %+v", rec)
	}
	if _, body := h.get("/keys"); strings.Contains(body, bob) {
		t.Errorf("the keys page shows the secret again")
	}
	if resp, body := h.post("/keys/create", url.Values{"csrf": {token}, "name": {"bob"}, "confirm": {"yes"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("create an existing name: %d\n%s", resp.StatusCode, body)
	} else if _, page := h.get("/keys"); !strings.Contains(page, "exists") {
		t.Errorf("no error shown for an existing name")
	}
	if resp, _ := h.post("/keys/create", url.Values{"csrf": {token}, "name": {"bad name"}, "confirm": {"yes"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("create a bad name: %d", resp.StatusCode)
	}

	rotated := secretOnce(t, "rotate", url.Values{"path": {"/keys/rotate"}, "csrf": {token}, "name": {"bob"}, "grace": {"1h"}, "confirm": {"yes"}})
	if rotated == bob {
		t.Fatalf("rotate kept the secret")
	}
	set := h.b.Keys()
	if _, err := set.Lookup(rotated, h.clock.Now()); err != nil {
		t.Errorf("the rotated secret: %v", err)
	}
	if _, err := set.Lookup(bob, h.clock.Now()); err != nil {
		t.Errorf("the old secret within its grace: %v", err)
	}
	if rec := h.findRecord("console.key_rotate"); rec.Key != "root" || rec.Target != "bob" {
		t.Errorf("rotate record %+v", rec)
	}

	// A key's own request policy is shown beside its state.
	if err := keys.Update(h.b.keysFile, false, func(f *keys.File) error {
		return f.SetPolicy("alice", &keys.PolicyOverride{MaxTokens: 500, DenyParams: []string{"tools", "logprobs"}})
	}); err != nil {
		t.Fatal(err)
	}
	if _, body := h.get("/keys"); !regexp.MustCompile(`data-key="alice"[\s\S]*?policy: max_tokens 500 · deny tools, logprobs`).MatchString(body) {
		t.Errorf("the keys page does not show alice's policy")
	}

	resp, body := h.post("/keys/revoke", url.Values{"csrf": {token}, "name": {"alice"}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Revoke key alice?") {
		t.Fatalf("unconfirmed revoke: %d, want the confirmation page", resp.StatusCode)
	}
	if _, err := h.b.Keys().Lookup(h.secrets["alice"], h.clock.Now()); err != nil {
		t.Fatalf("revoked before confirmation: %v", err)
	}
	if resp, _ := h.post("/keys/revoke", url.Values{"csrf": {token}, "name": {"alice"}, "confirm": {"yes"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if _, err := h.b.Keys().Lookup(h.secrets["alice"], h.clock.Now()); !errors.Is(err, keys.ErrDisabled) {
		t.Errorf("alice after revoke: %v, want ErrDisabled", err)
	}
	if rec := h.findRecord("console.key_revoke"); rec.Key != "root" || rec.Target != "alice" {
		t.Errorf("revoke record %+v", rec)
	}
	if _, body := h.get("/keys"); !regexp.MustCompile(`data-key="alice"[\s\S]*?revoked`).MatchString(body) {
		t.Errorf("the keys page does not show alice revoked")
	}

	// Revoking one's own key ends the session there and then.
	resp, _ = h.post("/keys/revoke", url.Values{"csrf": {token}, "name": {"root"}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?why=refused" || h.s.sessions.count() != 0 {
		t.Errorf("revoking one's own key: %d %s, %d sessions", resp.StatusCode, resp.Header.Get("Location"), h.s.sessions.count())
	}
}

func TestReload(t *testing.T) {
	h := newHarness(t)
	h.login("root")
	token := h.csrf()
	resp, _ := h.post("/reload", url.Values{"csrf": {token}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || h.b.reloads != 1 {
		t.Fatalf("reload: %d, %d reloads", resp.StatusCode, h.b.reloads)
	}
	h.b.mu.Lock()
	h.b.reloadErr = errors.New(`glmctl.hcl:3:5: unknown attribute "foo"`)
	h.b.mu.Unlock()
	h.post("/reload", url.Values{"csrf": {token}, "confirm": {"yes"}}, nil)
	_, body := h.get("/")
	for _, want := range []string{"Reload rejected", "rejected</span>", `unknown attribute &#34;foo&#34;`} {
		if !strings.Contains(body, want) {
			t.Errorf("overview after a rejected reload lacks %q", want)
		}
	}
	if rec := h.findRecord("console.reload"); rec.Key != "root" || !strings.Contains(rec.Error, "foo") {
		t.Errorf("reload record %+v", rec)
	}
}

func TestLivePartsAndLogFollow(t *testing.T) {
	h := newHarness(t)
	h.login("root")
	_, body := h.get("/live?part=programs&part=config&part=bogus")
	var out struct {
		Parts map[string]string `json:"parts"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(out.Parts) != 2 || !strings.Contains(out.Parts["programs"], `data-program="vllm"`) || !strings.Contains(out.Parts["config"], "sha256") {
		t.Errorf("live parts: %v", out.Parts)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.ts.URL+"/live/logs?program=vllm", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the opening comment: subscribed
		t.Fatal(err)
	}
	h.b.emit("vllm", "INFO loading weights 3/8\rsneaky")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			if got := strings.TrimSpace(line); got != "data: INFO loading weights 3/8sneaky" {
				t.Errorf("event %q", got)
			}
			return
		}
	}
	t.Fatal("no log line streamed")
}

func TestAuditPage(t *testing.T) {
	h := newHarness(t)
	h.login("root")
	token := h.csrf()
	h.post("/programs/restart", url.Values{"program": {"webui"}, "confirm": {"yes"}, "csrf": {token}}, nil)
	_, body := h.get("/audit?stage=admin&key=root")
	for _, want := range []string{"console.restart</strong> webui", "console.login"} {
		if !strings.Contains(body, want) {
			t.Errorf("audit page lacks %q", want)
		}
	}
	if _, body := h.get("/audit?stage=admin&key=nobody"); !strings.Contains(body, "No record matches") {
		t.Errorf("a filter that matches nothing shows records")
	}
	resp, _ := h.post("/audit/verify", url.Values{"csrf": {token}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("verify: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !h.s.verify.idle() {
		if time.Now().After(deadline) {
			t.Fatal("verify did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, body = h.get("/audit")
	if !strings.Contains(body, `<span class="pill ok">intact</span>`) {
		t.Errorf("no intact verify result:\n%s", body)
	}
}

func TestGPUSection(t *testing.T) {
	h := newHarness(t)
	h.login("root")
	h.b.mu.Lock()
	h.b.gpuErr = errors.New("NVML unavailable: built without NVML (CGO_ENABLED=0)")
	h.b.mu.Unlock()
	_, body := h.get("/")
	if !strings.Contains(body, `<p class="gpu-message" id="gpu-message">NVML unavailable: built without NVML (CGO_ENABLED=0)</p>`) {
		t.Errorf("no one-line GPU message")
	}
	h.b.mu.Lock()
	h.b.gpuErr, h.b.gpus = nil, demoGPUs()
	h.b.mu.Unlock()
	_, body = h.get("/")
	for _, want := range []string{"NVIDIA H100 80GB HBM3", "71.2 / 79.6", "98%", "64 °C", "512 W", "4242 (70.0 GiB)"} {
		if !strings.Contains(body, want) {
			t.Errorf("GPU table lacks %q", want)
		}
	}
}

func TestRunServesAndStops(t *testing.T) {
	h := newHarness(t)
	s, err := New(Options{Listen: "127.0.0.1:0", Backend: h.b, SampleEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := "http://" + s.Addr().String()
	resp, err := http.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /login: %d", resp.StatusCode)
	}
	// A followed log must not hold up the shutdown.
	id, _ := s.sessions.create(&keys.Key{Name: "root", Role: keys.RoleAdmin}, h.secrets["root"], time.Now())
	req, _ := http.NewRequest(http.MethodGet, base+"/live/logs?program=vllm", nil)
	req.AddCookie(&http.Cookie{Name: "glmctl_console", Value: id})
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("log stream: %d", stream.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := http.Get(base + "/login"); err == nil {
		t.Errorf("still serving after Run returned")
	}
}

func TestNewChecksOptions(t *testing.T) {
	if _, err := New(Options{Listen: "127.0.0.1:0"}); err == nil {
		t.Errorf("no backend accepted")
	}
	if _, err := New(Options{Backend: &fakeBackend{}}); err == nil {
		t.Errorf("no listen address accepted")
	}
}

func TestHumanFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{12 * time.Second: "12s", 4*time.Minute + 5*time.Second: "4m05s",
		5*time.Hour + 12*time.Minute: "5h12m", 76 * time.Hour: "3d4h"} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
	if got := fmt.Sprint(fmtSeconds(0.0123), " ", fmtSeconds(2.5), " ", fmtPct(0.031)); got != "12.3 ms 2.50 s 3.10%" {
		t.Errorf("formats: %q", got)
	}
}
