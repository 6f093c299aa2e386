package guard

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glmctl/glmctl/internal/config"
)

// cuttingUpstream answers every chat request with a stream of n chunks and
// then drops the connection without ending the stream.
func cuttingUpstream(t *testing.T, n int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range n {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"}}]}\n\n", i)
			w.(http.Flusher).Flush()
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close() // no terminating chunk: the stream is cut
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestStreamCutEndsWithError (issue 15): a stream the model server cuts
// ends, for the client, with an SSE event in OpenAI's error shape, and is
// audited as incomplete.
func TestStreamCutEndsWithError(t *testing.T) {
	up := cuttingUpstream(t, 3)
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.Upstream = up })
	resp, body := h.do(t, "POST", "/v1/chat/completions", keyUser1, chatBody("glm-4.7-flash", 10, true))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var events []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
		}
	}
	if len(events) != 4 || !strings.Contains(events[2], "t2") {
		t.Fatalf("events %q: want the 3 chunks then the error", events)
	}
	e := errorBody(t, []byte(events[3]))
	if e.Code != "upstream_incomplete" || e.Type != "server_error" {
		t.Fatalf("last event %q is not an OpenAI error", events[3])
	}
	recs := h.audit.completed(t, resp.Header.Get("X-Request-Id"))
	if got := recs[len(recs)-1]; got.Error != "incomplete" || got.Status != 200 {
		t.Fatalf("completed record: status %d error %q", got.Status, got.Error)
	}
}

// TestAuditFailureLoggedOnce (issue 15): with the audit log unwritable, a
// burst of refused requests is one log line (and a summary every 10 s), not
// one or two lines per request; its end is one more.
func TestAuditFailureLoggedOnce(t *testing.T) {
	h := newHarness(t)
	h.audit.setFail(true)
	for range 20 {
		if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 503 {
			t.Fatalf("status %d with the audit log failing", resp.StatusCode)
		}
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "audit log cannot be written"); n != 1 {
		t.Fatalf("%d failure lines for 20 refused requests, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "[ERROR]"); n != 1 {
		t.Fatalf("%d error lines for 20 refused requests, want 1:\n%s", n, logs)
	}
	h.audit.setFail(false)
	for range 3 {
		if resp, _ := h.do(t, "GET", "/v1/models", keyUser1, nil); resp.StatusCode != 200 {
			t.Fatalf("status %d after the audit log came back", resp.StatusCode)
		}
	}
	if n := strings.Count(h.logs.String(), "audit log writable again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1", n)
	}
}

// TestHungUpstreamRefusedAtOnce (issue 15): an upstream that takes requests
// and answers none gets a 504 after upstream_header_timeout, and then new
// requests are refused at once (503 + Retry-After) instead of piling up.
func TestHungUpstreamRefusedAtOnce(t *testing.T) {
	h := newHarness(t, func(cfg *config.Guard, _ *harness) { cfg.UpstreamHeaderTimeout = 300 * time.Millisecond })
	resp, body := h.do(t, "POST", "/v1/chat/completions", keyUser2, chatBody("hold", 5, false))
	if resp.StatusCode != http.StatusGatewayTimeout || errorBody(t, body).Code != codeUpstreamTimeout {
		t.Fatalf("hung upstream: %d %s", resp.StatusCode, body)
	}
	held := h.up.hits.Load()
	resp, body = h.do(t, "POST", "/v1/chat/completions", keyUser2, chatBody("glm-4.7-flash", 5, false))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after a hang: %d %s, want 503 at once", resp.StatusCode, body)
	}
	if h.up.hits.Load() != held {
		t.Fatal("a request was sent to the hung upstream")
	}
	if n := strings.Count(h.logs.String(), "sent no answer in time"); n != 1 {
		t.Fatalf("hang logged %d times", n)
	}
}

// TestDrainTimeoutEndsExchanges: when a shutdown's drain_timeout runs out,
// every exchange still being forwarded is ended properly before the
// connections close — a request still waiting for the model server's
// answer gets 503 server_shutting_down with Retry-After, an open stream
// ends with an error event of that code — and both are audited so.
func TestDrainTimeoutEndsExchanges(t *testing.T) {
	h := newHarness(t) // DrainTimeout 500ms
	type answer struct {
		status int
		retry  string
		body   string
		id     string
		err    error
	}
	send := func(model string, stream bool, first chan<- struct{}) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			raw, _ := json.Marshal(chatBody(model, 50, stream))
			req, _ := http.NewRequest("POST", h.url+"/v1/chat/completions", strings.NewReader(string(raw)))
			req.Header.Set("Authorization", "Bearer "+keyUser2)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			var got strings.Builder
			if first != nil {
				line, err := br.ReadString('\n')
				got.WriteString(line)
				if err != nil {
					ch <- answer{err: err}
					return
				}
				first <- struct{}{}
			}
			rest, err := io.ReadAll(br)
			got.Write(rest)
			ch <- answer{status: resp.StatusCode, retry: resp.Header.Get("Retry-After"), body: got.String(), id: resp.Header.Get("X-Request-Id"), err: err}
		}()
		return ch
	}
	streamed := make(chan struct{}, 1)
	held := send("hold", false, nil)       // waits for its answer's headers
	stream := send("slow", true, streamed) // a stream with no end
	waitFor(t, 10*time.Second, "both requests at the upstream", func() bool { return h.up.inFlight.Load() == 2 })
	select {
	case <-streamed:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's first event never came")
	}
	h.cancel() // stop: the drain (500 ms) runs out on both
	for name, ch := range map[string]<-chan answer{"held": held, "stream": stream} {
		var a answer
		select {
		case a = <-ch:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no end within 15 s of the stop", name)
		}
		switch name {
		case "held":
			if a.err != nil || a.status != http.StatusServiceUnavailable || a.retry == "" || !strings.Contains(a.body, `"code":"server_shutting_down"`) {
				t.Errorf("held request: %+v, want 503 server_shutting_down with Retry-After", a)
			}
		case "stream":
			if a.err != nil || a.status != http.StatusOK || !strings.Contains(a.body, `"code":"server_shutting_down"`) {
				t.Errorf("stream: %v status %d, last bytes %q, want its end to be a server_shutting_down event", a.err, a.status, a.body[max(0, len(a.body)-300):])
			}
		}
		if a.id != "" {
			recs := h.audit.completed(t, a.id) // received, then completed
			if last := recs[len(recs)-1]; last.Error != codeShuttingDown {
				t.Errorf("%s: completed record error %q, want %s", name, last.Error, codeShuttingDown)
			}
		}
	}
}
