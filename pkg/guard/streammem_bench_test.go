package guard

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"

	"github.com/glmctl/glmctl/internal/config"
)

// heldUpstream is a minimal model server for memory measurements: each
// connection gets the headers of an event stream and one event, then is held
// open until release is closed. Its per-connection cost (a goroutine and a
// small read buffer) is the same with and without the guard, so it cancels
// out of BenchmarkOpenStreams' difference.
type heldUpstream struct {
	ln      net.Listener
	release chan struct{}
	wg      sync.WaitGroup
}

func newHeldUpstream(tb testing.TB) *heldUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &heldUpstream{ln: ln, release: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go u.serve(c)
		}
	}()
	tb.Cleanup(func() {
		close(u.release)
		ln.Close()
		u.wg.Wait()
	})
	return u
}

const heldEvent = `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}` + "\n\n"

func (u *heldUpstream) serve(c net.Conn) {
	defer u.wg.Done()
	defer c.Close()
	br := bufio.NewReaderSize(c, 1024)
	if err := readRequestHead(br); err != nil {
		return
	}
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(heldEvent), heldEvent)
	<-u.release
	_, _ = io.WriteString(c, "0\r\n\r\n")
}

// readRequestHead reads a request's head and its Content-Length body.
func readRequestHead(br *bufio.Reader) error {
	n := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			_, _ = fmt.Sscan(strings.TrimSpace(v), &n)
		}
	}
	_, err := br.Discard(n)
	return err
}

// openStream sends a streaming chat request on a new connection and reads
// until the first event arrived; the connection stays open.
func openStream(tb testing.TB, addr, key string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	body := `{"model":"glm-4.7-flash","messages":[{"role":"user","content":"Hi"}],"max_tokens":16,"stream":true}`
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", auth, len(body), body)
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte("\n\n")) {
		n, err := c.Read(buf)
		if err != nil {
			tb.Fatalf("stream %d bytes in: %v (%q)", len(got), err, got)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
		tb.Fatalf("answer: %q", got)
	}
	return c
}

// memNow is the Go heap and stacks in use after a full collection.
func memNow() (heap, stack uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
}

// BenchmarkOpenStreams measures what the guard holds per open, idle stream
// (a streaming chat whose first event was delivered and whose model server
// is still thinking): Go heap and goroutine stacks in use after a full
// collection, with the same streams opened directly subtracted. It is the
// in-process view of bench-proxy's "memory per open stream" row (which reads
// the whole process's RSS, garbage not yet collected included).
func BenchmarkOpenStreams(b *testing.B) {
	const n = 1000
	measure := func(b *testing.B, addr, key string) (heap, stack float64, gor float64) {
		warm := openStream(b, addr, key) // first-use allocations out of the figure
		defer warm.Close()
		h0, s0, g0 := memNow()
		conns := make([]net.Conn, 0, n)
		for range n {
			conns = append(conns, openStream(b, addr, key))
		}
		h1, s1, g1 := memNow()
		// GUARD_STREAMS_HEAP=FILE writes a heap profile with the guard's
		// streams open (run with -memprofilerate 1 to see every allocation).
		if f := os.Getenv("GUARD_STREAMS_HEAP"); f != "" && key != "" {
			w, _ := os.Create(f)
			_ = pprof.Lookup("heap").WriteTo(w, 0)
			w.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		return float64(h1-h0) / n, float64(s1-s0) / n, float64(g1-g0) / n
	}
	for range b.N {
		up := newHeldUpstream(b)
		dh, ds, dg := measure(b, up.ln.Addr().String(), "")
		h := newHarness(b, withAuditor(discardAudit{}), func(c *config.Guard, _ *harness) { c.Upstream = "http://" + up.ln.Addr().String() })
		gh, gs, gg := measure(b, h.g.Addr().String(), keyUser1)
		b.ReportMetric(gh-dh, "heap-B/stream")
		b.ReportMetric(gs-ds, "stack-B/stream")
		b.ReportMetric(gh-dh+gs-ds, "B/stream")
		b.ReportMetric(gg-dg, "goroutines/stream")
	}
}
