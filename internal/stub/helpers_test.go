package stub

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestMain doubles as the stand-in binaries: with STUB_TEST_HELPER set the
// test binary runs that command with its arguments (go-plugin's pattern), so
// process tests exercise the real command line without a build step.
func TestMain(m *testing.M) {
	switch os.Getenv("STUB_TEST_HELPER") {
	case "vllm":
		os.Exit(RunApp("vllm-stub", VLLMCommand(), os.Args))
	case "webui":
		os.Exit(RunApp("webui-stub", WebUICommand(), os.Args))
	}
	os.Exit(m.Run())
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustStartVLLM runs a stand-in vLLM (on a free loopback port unless UDS is
// set) until the test ends, and waits until it accepts connections.
func mustStartVLLM(tb testing.TB, opts VLLMOptions) *VLLM {
	tb.Helper()
	if opts.UDS == "" && opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	v := NewVLLM(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("vllm run: %v", err)
			}
		case <-time.After(10 * time.Second):
			tb.Errorf("vllm did not stop")
		}
	})
	select {
	case <-v.Ready():
	case err := <-done:
		tb.Fatalf("vllm run: %v", err)
	case <-time.After(10 * time.Second):
		tb.Fatalf("vllm not ready")
	}
	return v
}

// httpClient reaches v over TCP or its unix socket.
func httpClient(v *VLLM) *http.Client {
	addr := v.Addr()
	tr := &http.Transport{}
	if addr.Network() == "unix" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr.String())
		}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// rootURL is the server's root URL ("http://localhost" for a unix socket).
func rootURL(v *VLLM) string {
	if v.Addr().Network() == "unix" {
		return "http://localhost"
	}
	return "http://" + v.Addr().String()
}

// newClient is the official OpenAI client pointed at v.
func newClient(v *VLLM, opts ...option.RequestOption) openai.Client {
	base := []option.RequestOption{
		option.WithBaseURL(rootURL(v) + "/v1/"),
		option.WithAPIKey("sk-unused"),
		option.WithHTTPClient(httpClient(v)),
		option.WithMaxRetries(0),
	}
	return openai.NewClient(append(base, opts...)...)
}

// post sends a JSON body and returns the status and the decoded body.
func post(tb testing.TB, v *VLLM, path, body string) (int, map[string]any) {
	tb.Helper()
	resp, err := httpClient(v).Post(rootURL(v)+path, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		tb.Fatalf("POST %s: decode: %v", path, err)
	}
	return resp.StatusCode, out
}

// sseEvents reads a whole event stream and returns each data payload.
func sseEvents(tb testing.TB, resp *http.Response) []string {
	tb.Helper()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sawBlank := true
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			sawBlank = true
			continue
		}
		if !sawBlank {
			tb.Fatalf("event not terminated by a blank line before %q", line)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			tb.Fatalf("unexpected stream line %q", line)
		}
		out = append(out, data)
		sawBlank = false
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read stream: %v", err)
	}
	return out
}

// isRefused reports whether err is a refused connection.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func unixAddr(path string) *net.UnixAddr { return &net.UnixAddr{Name: path, Net: "unix"} }
