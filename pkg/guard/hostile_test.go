package guard

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// Regression tests for issue 9: a hostile client can neither hold the
// guard's connections nor get past the token budget through the JSON
// parser, nor send a body the guard does not read.

// dialRaw opens a plain TCP connection to the guard.
func (h *harness) dialRaw(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.g.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAnswer reads one HTTP response from c within d and then reports
// whether the guard closed the connection after it.
func readAnswer(t testing.TB, c net.Conn, d time.Duration) (*http.Response, []byte, bool) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", d, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer body: %v", err)
	}
	resp.Body.Close()
	_, err = br.ReadByte()
	var ne net.Error
	closed := errors.Is(err, io.EOF) || (err != nil && !(errors.As(err, &ne) && ne.Timeout()))
	return resp, body, closed
}

// TestRefusedRequestAnsweredWithoutItsBody: a request refused before its
// body is read (no key, unknown route, too large…) is answered at once and
// the connection closed; the guard never waits for the announced body.
func TestRefusedRequestAnsweredWithoutItsBody(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name, head string
		status     int
	}{
		{"no key", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 401},
		{"bad key", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-nope-nope-nope\r\nContent-Length: 100\r\n\r\n", 401},
		{"unknown route", "POST /v1/nothing HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyUser1 + "\r\nContent-Length: 100\r\n\r\n", 404},
		{"control route", "POST /sleep HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyAdmin + "\r\nContent-Length: 100\r\n\r\n", 403},
		{"too large", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyUser1 + "\r\nContent-Length: 99999999\r\n\r\n", 413},
		{"body on GET", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyUser1 + "\r\nContent-Length: 100\r\n\r\n", 400},
		{"chunked body on GET", "GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyAdmin + "\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hits := h.up.hits.Load()
			c := h.dialRaw(t)
			if _, err := io.WriteString(c, tc.head); err != nil {
				t.Fatal(err)
			}
			// The body never comes: the answer must not wait for it.
			resp, body, closed := readAnswer(t, c, 3*time.Second)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if e := errorBody(t, body); e.Code == "" {
				t.Fatalf("no OpenAI error code: %s", body)
			}
			if !closed {
				t.Fatal("the connection stayed open after a refusal whose body was never read")
			}
			if got := h.up.hits.Load(); got != hits {
				t.Fatalf("the upstream was reached (%d → %d)", hits, got)
			}
		})
	}
}

// TestRefusalSurvivesABodyStillComing: a client still sending its body when
// it is refused gets the refusal and a clean end of the connection, not a
// reset. The guard stops reading at the refusal; closing with body bytes
// unread makes the kernel answer with a reset, which HTTP clients report
// as "connection reset by peer" instead of the answer (Go's transport does,
// when the reset hits its body write before its reader got the answer). So
// the connection is half-closed after the answer (FIN) and drained briefly
// before it is closed (lingering close).
func TestRefusalSurvivesABodyStillComing(t *testing.T) {
	h := newHarness(t)
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for i := range 10 {
		c := h.dialRaw(t)
		head := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 1<<20)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(chunk); err != nil { // unread by the guard when it answers
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("attempt %d: no answer: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || errorBody(t, body).Code == "" {
			t.Fatalf("attempt %d: got %d %s, want a 401 in OpenAI's error shape", i, resp.StatusCode, body)
		}
		// The guard's side ends with a FIN (EOF here), not a reset…
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("attempt %d: after the answer: %v, want EOF (a reset loses answers)", i, err)
		}
		// …and what the client still sends is taken, not reset.
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("attempt %d: the rest of the body after the answer: %v", i, err)
		}
	}
}

// TestSlowBodyCut: an authenticated request whose body does not arrive
// within body_timeout gets 408 and a closed connection.
func TestSlowBodyCut(t *testing.T) {
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.BodyTimeout = 300 * time.Millisecond })
	c := h.dialRaw(t)
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyUser1 + "\r\nContent-Length: 100\r\n\r\n{\"model\":"
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	resp, body, closed := readAnswer(t, c, 10*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || errorBody(t, body).Code != codeBodyTimeout {
		t.Fatalf("got %d %s, want 408 %s", resp.StatusCode, body, codeBodyTimeout)
	}
	if !closed {
		t.Fatal("connection left open after a slow body")
	}
	if h.up.hits.Load() != 0 {
		t.Fatal("a partial body reached the upstream")
	}
}

// TestBodyOnGETNeverForwarded: 20 MiB sent on GET /v1/models (Content-Length
// or chunked) is refused; not a byte reaches the upstream.
func TestBodyOnGETNeverForwarded(t *testing.T) {
	h := newHarness(t)
	var upstreamBytes atomic.Int64
	h.up.mu.Lock()
	h.up.onRequest = func(r *http.Request) {
		if r.Method == http.MethodGet {
			n, _ := io.Copy(io.Discard, r.Body)
			upstreamBytes.Add(n)
		}
	}
	h.up.mu.Unlock()
	big := strings.Repeat("x", 20<<20)
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodGet, h.url+"/v1/models", strings.NewReader(big))
		if chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(strings.NewReader(big))
		}
		req.Header.Set("Authorization", "Bearer "+keyUser1)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			// The guard may close before the client has sent everything.
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || errorBody(t, body).Code != codeBodyNotAllowed {
			t.Fatalf("chunked=%v: %d %s", chunked, resp.StatusCode, body)
		}
	}
	if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 200 {
		t.Fatalf("a GET without body: %d", resp.StatusCode)
	}
	if n := upstreamBytes.Load(); n != 0 {
		t.Fatalf("the upstream received %d body bytes on GET", n)
	}
}

// TestContentLengthWithChunkedClosed: a request with both Content-Length
// and Transfer-Encoding is answered, then the connection is closed, so the
// bytes after it are never read as another request.
func TestContentLengthWithChunkedClosed(t *testing.T) {
	h := newHarness(t)
	c := h.dialRaw(t)
	body := `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`
	smuggled := "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyUser1 + "\r\n\r\n"
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyUser1 +
		"\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n" + smuggled
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, got, closed := readAnswer(t, c, 5*time.Second)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if !closed {
		t.Fatal("connection kept open after a request with Content-Length and Transfer-Encoding")
	}
}

// TestCredentialHeadersStripped: no header that can carry a credential
// reaches the upstream, and X-Real-IP only from a trusted proxy.
func TestCredentialHeadersStripped(t *testing.T) {
	h := newHarness(t)
	req, _ := http.NewRequest(http.MethodGet, h.url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+keyUser1)
	for _, name := range []string{"Api-Key", "X-Api-Key", "Proxy-Authorization", "Cookie", "X-Auth-Token"} {
		req.Header.Set(name, keyUser1)
	}
	req.Header.Set("X-Real-IP", "6.6.6.6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	h.up.mu.Lock()
	got := h.up.last.Header.Clone()
	h.up.mu.Unlock()
	for name, vals := range got {
		for _, v := range vals {
			if strings.Contains(v, keyUser1) {
				t.Errorf("the key reached the upstream in %s", name)
			}
		}
	}
	if got.Get("X-Real-Ip") != "" {
		t.Error("X-Real-IP from an untrusted client reached the upstream")
	}
}

// TestTokenBudgetBypasses: the fields that decide the reservation are read
// as the model server reads them.
func TestTokenBudgetBypasses(t *testing.T) {
	rt := lookupRoute("/v1/chat/completions")
	comp := lookupRoute("/v1/completions")
	lim := inspectLimits{defaultMaxTokens: 100, maxModelLen: 4096}
	refusedCases := map[string]string{
		"long s folds to max_completion_tokens": `{"model":"m","max_tokens":4000,"max_completion_token` + "\u017f" + `":1}`,
		"Kelvin sign folds to k":                `{"model":"m","max_tokens":4000,"max_completion_to` + "\u212a" + `ens":1}`,
		"escaped folded name":                   `{"model":"m","max_tokens":4000,"MAX_TOKENS":1}`,
		"int64 max":                             `{"model":"m","max_tokens":9223372036854775807}`,
		"beyond int64":                          `{"model":"m","max_tokens":92233720368547758070}`,
		"n × max_tokens overflow":               `{"model":"m","n":2,"max_tokens":4611686018427387903}`,
		"above max_model_len":                   `{"model":"m","max_tokens":4097}`,
		"negative":                              `{"model":"m","max_tokens":-1}`,
		"float":                                 `{"model":"m","max_tokens":100.0}`,
		"exponent":                              `{"model":"m","max_tokens":1e3}`,
		"string":                                `{"model":"m","max_tokens":"100"}`,
		"n zero":                                `{"model":"m","n":0}`,
		"n too many":                            `{"model":"m","n":129}`,
		"duplicate":                             `{"model":"m","max_tokens":1,"max_tokens":4000}`,
		"model not a string":                    `{"model":["a","b"]}`,
		"include_usage folded":                  `{"model":"m","stream":true,"stream_options":{"include_u` + "\u017f" + `age":true}}`,
		"stream not a bool":                     `{"model":"m","stream":"true"}`,
	}
	for name, body := range refusedCases {
		if _, err := inspect([]byte(body), rt, lim); err == nil {
			t.Errorf("%s: accepted %s", name, body)
		}
	}
	reserve := func(rt *route, body string) int64 {
		t.Helper()
		req, err := inspect([]byte(body), rt, lim)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return req.reserve - estimateTokens(int64(len(`"p"`)))
	}
	for _, tc := range []struct {
		rt   *route
		body string
		want int64
	}{
		{rt, `{"prompt":"p","max_completion_tokens":0,"max_tokens":3000}`, 3000},    // 0 or max_tokens → max_tokens
		{rt, `{"prompt":"p","max_completion_tokens":null,"max_tokens":3000}`, 3000}, // null too
		{rt, `{"prompt":"p","max_completion_tokens":200,"max_tokens":3000}`, 200},   // chat prefers max_completion_tokens
		{rt, `{"prompt":"p"}`, 100}, // default_max_tokens
		{comp, `{"prompt":"p","max_completion_tokens":1,"max_tokens":3000}`, 3000},        // completions read max_tokens only
		{comp, `{"prompt":"p","max_completion_tokens":3000}`, completionDefaultMaxTokens}, // absent: 16
		{comp, `{"prompt":"p","max_tokens":null}`, 100},                                   // null: the server's default
		{rt, `{"prompt":"p","max_tokens":10,"n":3,"best_of":5}`, 50},
	} {
		if got := reserve(tc.rt, tc.body); got != tc.want {
			t.Errorf("%s %s: reserves %d completion tokens, want %d", tc.rt.path, tc.body, got, tc.want)
		}
	}
}

// TestFoldedFieldRefusedOverHTTP drives the Unicode-fold bypass through a
// real guard: ten such requests at once against tpm 3000 must not pass.
func TestFoldedFieldRefusedOverHTTP(t *testing.T) {
	h := newHarness(t, withLimits(`{"rate_limits": {"limited": {"tpm": 3000}}}`))
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":100000,"max_completion_token` + "\u017f" + `":1}`
	resp, out := h.do(t, "POST", "/v1/chat/completions", keyLimit, body)
	if resp.StatusCode != 400 || !strings.Contains(errorBody(t, out).Message, "max_completion_tokens") {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	if h.up.hits.Load() != 0 {
		t.Fatal("forwarded")
	}
}

// TestStreamUsageInjectedExactly: the stream_options the guard adds keep the
// client's other options and bytes.
func TestStreamUsageInjectedExactly(t *testing.T) {
	rt := lookupRoute("/v1/chat/completions")
	lim := inspectLimits{defaultMaxTokens: 10, maxModelLen: 100}
	for body, want := range map[string]string{
		`{"stream":true,"model":"m"}`:           `{"stream_options":{"include_usage":true},"stream":true,"model":"m"}`,
		`{"stream":true,"stream_options":null}`: `{"stream":true,"stream_options":{"include_usage":true}}`,
		`{"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}`: `{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}`,
	} {
		req, err := inspect([]byte(body), rt, lim)
		if err != nil {
			t.Fatal(err)
		}
		if string(req.body) != want || !req.hideUsage {
			t.Errorf("%s → %s (hide %v), want %s", body, req.body, req.hideUsage, want)
		}
		if !json.Valid(req.body) {
			t.Errorf("invalid JSON forwarded: %s", req.body)
		}
	}
}

// TestConnectionCaps: connections beyond max_connections get a fast 503,
// and unauthenticated connections beyond the per-client cap a fast 429; a
// connection whose request authenticated no longer counts as pending.
func TestConnectionCaps(t *testing.T) {
	h := newHarness(t, func(cfg *config.Guard, _ *harness) {
		cfg.MaxConnections = 6
		cfg.MaxUnauthenticatedPerClient = 3
	})
	// One keep-alive connection that authenticates.
	authed := h.dialRaw(t)
	_, _ = io.WriteString(authed, "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyUser1+"\r\n\r\n")
	_ = authed.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(authed), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("authenticated request: %v %v", resp, err)
	}
	resp.Body.Close()
	// Three silent connections: the per-client cap is reached.
	for range 3 {
		h.dialRaw(t)
	}
	waitFor(t, 5*time.Second, "4 connections counted", func() bool { return h.g.OpenConnections() == 4 })
	c := h.dialRaw(t)
	_, _ = io.WriteString(c, "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyUser1+"\r\n\r\n")
	resp, body, closed := readAnswer(t, c, 3*time.Second)
	if resp.StatusCode != http.StatusTooManyRequests || !closed || errorBody(t, body).Code != "too_many_connections" {
		t.Fatalf("per-client cap: %d closed=%v %s", resp.StatusCode, closed, body)
	}
	if got := counterValue(t, h, "glmctl_guard_connections_refused_total", connPerClient); got != 1 {
		t.Fatalf("per_client refusals counted %v, want 1", got)
	}
	// max_connections: loopback is one client, so lift its own cap.
	h.g.conns.setCaps(6, 100, nil)
	for range 2 {
		h.dialRaw(t)
	}
	waitFor(t, 5*time.Second, "6 connections counted", func() bool { return h.g.OpenConnections() == 6 })
	c = h.dialRaw(t)
	_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, _, closed = readAnswer(t, c, 3*time.Second)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !closed {
		t.Fatalf("max_connections: %d closed=%v", resp.StatusCode, closed)
	}
	if got := counterValue(t, h, "glmctl_guard_connections_refused_total", connMaxConnections); got != 1 {
		t.Fatalf("max_connections refusals counted %v, want 1", got)
	}
}
