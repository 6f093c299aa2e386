package guard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/audit"
)

// rawResp sends a hand-written HTTP request and returns the status, body
// and headers of the response.
func (h *harness) rawResp(t *testing.T, req string) (int, string, http.Header) {
	t.Helper()
	c, err := net.Dial("tcp", h.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestHostileRequests(t *testing.T) {
	h := newHarness(t)
	auth := "Authorization: Bearer " + keyAdmin + "\r\n"
	cases := []struct {
		name string
		req  string
		want int
		// stdlib: refused by net/http before any handler runs (malformed
		// Host or header bytes), so there is no x-request-id.
		stdlib bool
	}{
		{"traversal to a control route", "POST /v1/../pause HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 0\r\n\r\n", 400, false},
		{"dot segment", "GET /v1/./models HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 400, false},
		{"encoded traversal", "GET /v1/%2e%2e/pause HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 400, false},
		{"encoded slash", "GET /v1%2fmodels HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 400, false},
		{"double slash", "GET //v1/models HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 400, false},
		{"backslash", "GET /v1\\models HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 400, false},
		{"control route, admin", "POST /pause HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 0\r\n\r\n", 403, false},
		{"control route, no key", "POST /collective_rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 401, false},
		{"Host header naming an allowed route", "GET /pause HTTP/1.1\r\nHost: localhost/v1/models?\r\n\r\n", 400, true},
		{"Host header trick with a key", "POST /pause HTTP/1.1\r\nHost: 127.0.0.1/v1/models?x=\r\n" + auth + "Content-Length: 0\r\n\r\n", 400, true},
		{"Host header of an allowed route's server", "POST /pause HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: localhost/v1/models?\r\n" + auth + "Content-Length: 0\r\n\r\n", 403, false},
		{"absolute-form URL", "POST http://localhost/v1/models/../../pause HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 0\r\n\r\n", 400, false},
		{"absolute-form to a control route", "POST http://localhost/v1/models HTTP/1.1\r\nHost: localhost\r\n" + auth + "Content-Length: 0\r\n\r\n", 405, false},
		{"unknown route", "GET /v2/secret HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 404, false},
		{"control bytes in Authorization", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: \x01\x02garbage\r\n\r\n", 400, true},
		{"garbage Authorization", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: \xff\xfe garbage\r\n\r\n", 401, false},
		{"bare key without scheme", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: " + keyAdmin + "\r\n\r\n", 401, false},
		{"empty bearer", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\n\r\n", 401, false},
		{"Basic auth", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n", 401, false},
		{"two tokens", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a b\r\n\r\n", 401, false},
		{"HTTP/1.0", "GET /v1/models HTTP/1.0\r\n" + auth + "\r\n", 200, false},
		{"user route, admin only", "POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyUser1 + "\r\nContent-Length: 2\r\n\r\n{}", 403, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, body, hdr := h.rawResp(t, tc.req)
			if got != tc.want {
				t.Fatalf("status %d, want %d: %s", got, tc.want, body)
			}
			if !tc.stdlib && hdr.Get("X-Request-Id") == "" {
				t.Fatalf("no x-request-id on %d", got)
			}
		})
	}
	h.up.mu.Lock()
	defer h.up.mu.Unlock()
	if h.up.controlHits != 0 {
		t.Fatalf("a control route reached the upstream %d times", h.up.controlHits)
	}
}

func TestBodies(t *testing.T) {
	h := newHarness(t)
	t.Run("malformed JSON", func(t *testing.T) {
		resp, b := h.do(t, "POST", "/v1/chat/completions", keyUser1, `{"model": "m", "messages": [`)
		if e := errorBody(t, b); resp.StatusCode != 400 || e.Type != "invalid_request_error" {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("wrong types", func(t *testing.T) {
		resp, _ := h.do(t, "POST", "/v1/chat/completions", keyUser1, `{"model": 5}`)
		if resp.StatusCode != 400 {
			t.Fatal(resp.Status)
		}
	})
	t.Run("not an object", func(t *testing.T) {
		resp, _ := h.do(t, "POST", "/v1/chat/completions", keyUser1, `[1,2]`)
		if resp.StatusCode != 400 {
			t.Fatal(resp.Status)
		}
	})
	t.Run("negative max_tokens", func(t *testing.T) {
		resp, _ := h.do(t, "POST", "/v1/chat/completions", keyUser1, `{"model":"m","max_tokens":-1}`)
		if resp.StatusCode != 400 {
			t.Fatal(resp.Status)
		}
	})
	t.Run("huge body with length", func(t *testing.T) {
		big := `{"model":"m","prompt":"` + strings.Repeat("a", 100<<10) + `"}`
		resp, b := h.do(t, "POST", "/v1/completions", keyUser1, big)
		if e := errorBody(t, b); resp.StatusCode != 413 || e.Code != "body_too_large" {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("huge chunked body", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			_, _ = io.WriteString(pw, `{"model":"m","prompt":"`+strings.Repeat("a", 100<<10)+`"}`)
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", h.url+"/v1/completions", pr)
		req.Header.Set("Authorization", "Bearer "+keyUser1)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatal(resp.Status)
		}
	})
	t.Run("model not allowed", func(t *testing.T) {
		resp, b := h.do(t, "POST", "/v1/chat/completions", keyUser2, chatBody("gpt-4", 10, false))
		if e := errorBody(t, b); resp.StatusCode != 403 || e.Code != "model_not_allowed" {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		resp, _ := h.do(t, "GET", "/v1/chat/completions", keyUser1, nil)
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Fatal(resp.Status)
		}
	})
	t.Run("embeddings and completions pass", func(t *testing.T) {
		resp, _ := h.do(t, "POST", "/v1/embeddings", keyUser1, `{"model":"m","input":"hi"}`)
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		resp, _ = h.do(t, "POST", "/v1/completions", keyUser1, `{"model":"m","prompt":"hi","max_tokens":5}`)
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
	})
	t.Run("rejections are audited once", func(t *testing.T) {
		resp, _ := h.do(t, "POST", "/v1/chat/completions", "", chatBody("m", 10, false))
		recs := h.audit.completed(t, resp.Header.Get("X-Request-Id"))
		if len(recs) != 1 || recs[0].Status != 401 || recs[0].Error != "invalid_api_key" || recs[0].Key != "" {
			t.Fatalf("records = %+v", recs)
		}
	})
}

func TestSlowHeadersCut(t *testing.T) {
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.HeaderTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", h.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /v1/models HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c) // the server closes the connection
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("slow headers were not cut off")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("cut after %v", took)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	h := newHarness(t)
	resp, b := h.do(t, "GET", "/health", "", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"status":"ok"}` {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	h.setReady(false)
	resp, _ = h.do(t, "GET", "/health", "", nil)
	if resp.StatusCode != 503 {
		t.Fatal(resp.Status)
	}
	resp, b = h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("m", 10, false))
	if e := errorBody(t, b); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || e.Code != "model_not_ready" {
		t.Fatalf("%d %v %+v", resp.StatusCode, resp.Header, e)
	}
	// Authentication still comes first.
	if resp, _ := h.do(t, "GET", "/v1/models", "", nil); resp.StatusCode != 401 {
		t.Fatal(resp.Status)
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.Upstream = dead })
	resp, b := h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("m", 10, false))
	if e := errorBody(t, b); resp.StatusCode != 502 || e.Type != "server_error" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %+v", resp.StatusCode, e)
	}
	// An admitted request costs one request even when the upstream is down.
	recs := h.audit.completed(t, resp.Header.Get("X-Request-Id"))
	if len(recs) != 2 || recs[1].Status != 502 {
		t.Fatalf("records %+v", recs)
	}
}

func TestUnixSocketUpstream(t *testing.T) {
	h := newHarness(t, withUnixUpstream(t))
	if !strings.HasPrefix(h.cfg.Upstream, "unix://") {
		t.Fatal(h.cfg.Upstream)
	}
	resp, b := h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("m", 10, true))
	if resp.StatusCode != 200 || !strings.Contains(string(b), "data: [DONE]") || strings.Contains(string(b), `"usage"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if n := strings.Count(string(b), "data: "); n != 4 {
		t.Fatalf("%d events, want 3 chunks and [DONE]:\n%s", n, b)
	}
}

func TestAuditFailureRefusesAndCostsNothing(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"rpm": 1}}}`))
	h.audit.setFail(true)
	resp, b := h.do(t, "GET", "/v1/models", keyLimit, nil)
	if e := errorBody(t, b); resp.StatusCode != 503 || e.Code != "audit_unavailable" {
		t.Fatalf("%d %+v", resp.StatusCode, e)
	}
	hits := h.up.hits.Load()
	if hits != 0 {
		t.Fatal("forwarded without an audit record")
	}
	h.audit.setFail(false)
	if resp, _ := h.do(t, "GET", "/v1/models", keyLimit, nil); resp.StatusCode != 200 {
		t.Fatalf("the refused request was charged: %d", resp.StatusCode)
	}
}

func TestReceivedWrittenBeforeForwarding(t *testing.T) {
	h := newHarness(t)
	seen := make(chan int, 1)
	h.up.mu.Lock()
	h.up.onRequest = func(r *http.Request) { seen <- len(h.audit.byID(r.Header.Get("X-Request-Id"))) }
	h.up.mu.Unlock()
	resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if n := <-seen; n != 1 {
		t.Fatalf("upstream reached with %d audit records for the request, want the received one", n)
	}
}

func TestNewRefusesBadSetups(t *testing.T) {
	dir := t.TempDir()
	kp := dir + "/k.json"
	mustWrite(t, kp, defaultKeysFile())
	bad := dir + "/bad.json"
	mustWrite(t, bad, "{\"api_keys\": {\n \"a\": 1}}")
	cases := []struct {
		name string
		cfg  config.Guard
		want string
	}{
		{"remote upstream", config.Guard{Upstream: "http://10.0.0.5:8000", KeysFile: kp}, "is not on loopback"},
		{"no upstream", config.Guard{KeysFile: kp}, "guard.upstream is required"},
		{"relative socket", config.Guard{Upstream: "unix://run/v.sock", KeysFile: kp}, "needs an absolute path"},
		{"upstream path", config.Guard{Upstream: "http://127.0.0.1:1/v1", KeysFile: kp}, "has a path"},
		{"no keys", config.Guard{Upstream: "http://127.0.0.1:1"}, "keys_file is required"},
		{"invalid keys", config.Guard{Upstream: "http://127.0.0.1:1", KeysFile: bad}, "2:7"},
		{"missing limits", config.Guard{Upstream: "http://127.0.0.1:1", KeysFile: kp, LimitsFile: dir + "/none"}, "limits file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(&tc.cfg, Deps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := New(&config.Guard{Upstream: "http://10.0.0.5:8000", KeysFile: kp, AllowRemoteUpstream: true}, Deps{}); err != nil {
		t.Fatalf("allow_remote_upstream: %v", err)
	}
	if _, err := New(&config.Guard{Upstream: "http://[::1]:8000", KeysFile: kp}, Deps{}); err != nil {
		t.Fatalf("ipv6 loopback: %v", err)
	}
}

func TestTutorialFilesLoad(t *testing.T) {
	for _, f := range []string{"api_keys.json", "rate_limits.json"} {
		if _, err := readTutorial(f); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &config.Guard{Upstream: "http://127.0.0.1:1", KeysFile: "../../testdata/tutorial/api_keys.json", LimitsFile: "../../testdata/tutorial/rate_limits.json"}
	g, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.snap.Load().limits.For("user2"); got.RPM != 30 || got.TPM != 30000 {
		t.Fatalf("user2 limits = %+v", got)
	}
	if got := g.snap.Load().limits.For("admin"); got.RPM != 60 {
		t.Fatalf("admin (default) limits = %+v", got)
	}
}

func readTutorial(name string) ([]byte, error) {
	b, err := readFile("../../testdata/tutorial/" + name)
	if err != nil {
		return nil, fmt.Errorf("tutorial: %w", err)
	}
	return b, nil
}

// TestUpstreamErrorCostsARequestNotTokens: an upstream 500 reaches the
// client as it is; the request counts, its token reservation comes back.
func TestUpstreamErrorCostsARequestNotTokens(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"rpm": 2, "tpm": 1000}}}`))
	resp, b := h.do(t, "POST", "/v1/chat/completions", keyLimit, chatBody("fail", 500, false))
	if resp.StatusCode != 500 || !strings.Contains(string(b), "engine dead") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	h.audit.completed(t, resp.Header.Get("X-Request-Id"))
	resp, _ = h.do(t, "GET", "/v1/models", keyLimit, nil)
	if got := resp.Header.Get("X-Ratelimit-Remaining-Requests"); got != "0" {
		t.Fatalf("remaining requests %s, want 0 (the failed request counts)", got)
	}
	if rem := atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens")); rem < 999 {
		t.Fatalf("remaining tokens %d: the failed request's reservation was kept", rem)
	}
}

func TestClientAddressFromTrustedProxies(t *testing.T) {
	g := &settings{}
	for _, c := range []string{"10.0.0.0/8", "127.0.0.1"} {
		p, err := parsePrefix(c)
		must(t, err)
		g.trusted = append(g.trusted, p)
	}
	cases := []struct{ remote, xff, want string }{
		{"203.0.113.9:5000", "1.2.3.4", "203.0.113.9"},              // untrusted peer: XFF ignored
		{"127.0.0.1:5000", "1.2.3.4", "1.2.3.4"},                    // trusted peer
		{"127.0.0.1:5000", "6.6.6.6, 1.2.3.4, 10.1.1.1", "1.2.3.4"}, // right-most untrusted
		{"127.0.0.1:5000", "garbage", "127.0.0.1"},
		{"[::ffff:127.0.0.1]:5000", "1.2.3.4", "1.2.3.4"},
	}
	for _, tc := range cases {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("X-Forwarded-For", tc.xff)
		if got := g.clientAddr(r); got != tc.want {
			t.Errorf("%s / %q: got %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// blockingAudit holds every "received" record until the request's context
// ends, like a writer whose queue is stuck behind a slow disk.
type blockingAudit struct {
	memAudit
	blocked atomic.Int64
}

func (b *blockingAudit) Write(ctx context.Context, r *audit.Record) error {
	if r.Stage == audit.StageReceived {
		b.blocked.Add(1)
		<-ctx.Done()
		return fmt.Errorf("audit write: %w", ctx.Err())
	}
	return b.memAudit.Write(ctx, r)
}

// TestClientGoneWhileAuditing: a client that disconnects while its received
// record waits is not reported as an audit failure, is not forwarded, and
// gives its admission back (rpm 1: the next request still passes).
func TestClientGoneWhileAuditing(t *testing.T) {
	ba := &blockingAudit{}
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"rpm": 1, "concurrency": 1}}}`), withAuditor(ba))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+keyLimit)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, 15*time.Second, "received record blocked", func() bool { return ba.blocked.Load() == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	var rec audit.Record
	waitFor(t, 15*time.Second, "completed record", func() bool {
		ba.mu.Lock()
		defer ba.mu.Unlock()
		for _, r := range ba.recs {
			if r.Stage == audit.StageCompleted {
				rec = r
				return true
			}
		}
		return false
	})
	if rec.Error != "client_closed" || rec.Status != 499 {
		t.Errorf("completed record: error %q status %d, want client_closed 499", rec.Error, rec.Status)
	}
	if strings.Contains(h.logs.String(), "audit record could not be written") {
		t.Errorf("a client that went away was logged as an audit failure:\n%s", h.logs.String())
	}
	if n := h.up.hits.Load(); n != 0 {
		t.Fatalf("forwarded %d request(s) without a received record", n)
	}
	// The admission was given back: rpm 1 and concurrency 1 still have room.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel2()
	d, err := h.g.store.Admit(ctx2, Ask{Key: "limited", Limit: Limit{RPM: 1, Concurrency: 1}})
	if err != nil || !d.Allowed {
		t.Fatalf("the abandoned request kept its admission: %+v %v", d, err)
	}
}

// TestAmbiguousFieldsRefused: encoding/json matches names case-insensitively
// and keeps the last duplicate; the model server matches exactly. A body
// that spells a field the guard decides on twice, or in another case, would
// let the guard check one model while the server serves another.
func TestAmbiguousFieldsRefused(t *testing.T) {
	h := newHarness(t)
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for name, body := range map[string]string{
		"case variant":      `{"model":"forbidden-model","Model":"glm-4.7-flash",` + msgs + `}`,
		"duplicate":         `{"model":"glm-4.7-flash","model":"forbidden-model",` + msgs + `}`,
		"escaped duplicate": `{"\u006dodel":"forbidden-model","model":"glm-4.7-flash",` + msgs + `}`,
		"max_tokens case":   `{"model":"glm-4.7-flash","max_tokens":1,"MAX_TOKENS":100000,` + msgs + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			before := h.up.hits.Load()
			resp, b := h.do(t, "POST", "/v1/chat/completions", keyUser2, body)
			if e := errorBody(t, b); resp.StatusCode != 400 || e.Code != codeBadJSON {
				t.Fatalf("got %d %+v, want 400 %s", resp.StatusCode, e, codeBadJSON)
			}
			if h.up.hits.Load() != before {
				t.Fatal("an ambiguous body reached the upstream")
			}
		})
	}
	for name, body := range map[string]string{
		"nested names":        `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"x","Model":"other","model":"y"}]}`,
		"names inside values": `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"\",\"Model\":\"other\",\"model\":\""}]}`,
		"other fields":        `{"model":"glm-4.7-flash","Temperature":0.5,"user":"u",` + msgs + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			if resp, b := h.do(t, "POST", "/v1/chat/completions", keyUser2, body); resp.StatusCode != 200 {
				t.Fatalf("got %d %s, want 200", resp.StatusCode, b)
			}
		})
	}
}
