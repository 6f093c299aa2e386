package guard

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/glmctl/glmctl/pkg/config"
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
