package console

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a console on an httptest server with a fake backend, a real
// keys file and a real audit log.
type harness struct {
	t         *testing.T
	s         *Server
	b         *fakeBackend
	ts        *httptest.Server
	clock     *fakeClock
	secrets   map[string]string
	auditPath string
	jar       http.CookieJar
	client    *http.Client
}

func newHarness(t *testing.T, tweak ...func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	kf, lf, secrets := testKeys(t, dir)
	b := newFakeBackend(t, kf, lf, "vllm", "webui")
	auditPath := filepath.Join(dir, "audit.log")
	aw, err := audit.Open(&config.Audit{Path: auditPath, Fsync: "never"}, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = aw.Close() })
	clock := &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	opts := Options{Listen: "127.0.0.1:0", Backend: b, Audit: aw, AuditPath: auditPath, Now: clock.Now,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard})}
	for _, f := range tweak {
		f(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	jar, _ := cookiejar.New(nil)
	h := &harness{t: t, s: s, b: b, ts: ts, clock: clock, secrets: secrets, auditPath: auditPath, jar: jar}
	h.client = &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return h
}

// do sends a request and returns the response with its body read.
func (h *harness) do(req *http.Request) (*http.Response, string) {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, string(body)
}

func (h *harness) get(path string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.ts.URL+path, nil)
	return h.do(req)
}

// post sends a form as a browser of the console's own page would (Origin
// set); headers override or, with an empty value, remove headers.
func (h *harness) post(path string, form url.Values, headers map[string]string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.ts.URL)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return h.do(req)
}

// login signs in with the named key's secret and checks it worked.
func (h *harness) login(name string) {
	h.t.Helper()
	resp, body := h.post("/login", url.Values{"key": {h.secrets[name]}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		h.t.Fatalf("sign-in as %s: %d %s, want 303 to /\n%s", name, resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the session's token from a page, as a browser's form holds it.
func (h *harness) csrf() string {
	h.t.Helper()
	_, body := h.get("/")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("no csrf field on the overview:\n%s", body)
	}
	return m[1]
}

// records reads the audit log's admin records.
func (h *harness) adminRecords() []audit.Record {
	h.t.Helper()
	var out []audit.Record
	_, err := scanBackwards(h.auditPath, 1<<30, func(r *auditLine) bool {
		if r.Stage == audit.StageAdmin {
			out = append([]audit.Record{*r}, out...)
		}
		return true
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// findRecord returns the last admin record of action, or fails.
func (h *harness) findRecord(action string) audit.Record {
	h.t.Helper()
	recs := h.adminRecords()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Action == action {
			return recs[i]
		}
	}
	h.t.Fatalf("no %s record in the audit log; admin records: %+v", action, recs)
	return audit.Record{}
}
