package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// upstream answers chat requests like the stand-in: JSON, or SSE events
// flushed one by one and [DONE].
func upstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream    bool `json:"stream"`
			MaxTokens int  `json:"max_tokens"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Header.Get("Authorization") != "Bearer k" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"invalid_api_key"}}`)
			return
		}
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"object":"chat.completion","choices":[]}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range req.MaxTokens {
			fmt.Fprintf(w, "data: {\"i\":%d}\n\n", i)
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestClosedChatAndStream(t *testing.T) {
	addr := upstream(t)
	for _, stream := range []bool{false, true} {
		r := runClosed(closedOpts{addr: addr, req: requestBytes(addr, "k", "m", stream, 5), stream: stream, conns: 4,
			warmup: 50 * time.Millisecond, duration: 200 * time.Millisecond, timeout: 5 * time.Second, procs: procs{clkTck: 100}})
		if r.Errors != 0 || r.Requests == 0 {
			t.Fatalf("stream=%v: %d requests, %d errors (%v %s)", stream, r.Requests, r.Errors, r.Statuses, r.ErrorSample)
		}
		if stream && r.Events != 6 {
			t.Errorf("events per stream = %v, want 6 (5 tokens and [DONE])", r.Events)
		}
		if r.LatP50 <= 0 || r.LatP99 < r.LatP50 {
			t.Errorf("latencies p50 %v p99 %v", r.LatP50, r.LatP99)
		}
	}
}

func TestOpenLoopSendsTheSchedule(t *testing.T) {
	addr := upstream(t)
	r := runOpen(openOpts{addr: addr, req: requestBytes(addr, "k", "m", false, 1), rate: 500, duration: 200 * time.Millisecond,
		conns: 4, drain: 2 * time.Second, timeout: 5 * time.Second, procs: procs{clkTck: 100}})
	if r.Offered != 100 || r.Requests != 100 || r.Errors != 0 || r.Unsent != 0 {
		t.Fatalf("offered %d, answered %d, errors %d, unsent %d", r.Offered, r.Requests, r.Errors, r.Unsent)
	}
}

func TestHoldReadsRSS(t *testing.T) {
	addr := upstream(t)
	self := procs{pids: []int{os.Getpid()}, clkTck: 100}
	r, err := runHold(holdOpts{addr: addr, req: requestBytes(addr, "k", "m", true, 3), n: 5, parallel: 2, timeout: 5 * time.Second, procs: self})
	if err != nil {
		t.Fatal(err)
	}
	if r.Open != 5 || r.RSSIdleKiB == 0 || r.RSSOpenKiB == 0 {
		t.Fatalf("open %d, RSS %d → %d", r.Open, r.RSSIdleKiB, r.RSSOpenKiB)
	}
}

// The client copes with what proxies send: Connection: close, HTTP/1.0
// without a length, chunk extensions and trailers.
func TestClientFraming(t *testing.T) {
	answers := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
		"HTTP/1.0 200 OK\r\n\r\ndata: [DONE]\n\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8;x=y\r\ndata: a\n\r\n10\r\ndata: [DONE]\n\n\n\n\r\n0\r\nTrailer: v\r\n\r\n",
	}
	for i, a := range answers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte(a))
			c.Close()
		}()
		c := newConn(ln.Addr().String(), 2*time.Second)
		r, err := c.roundTrip([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), true)
		ln.Close()
		if err != nil || r.status != 200 {
			t.Fatalf("answer %d: status %d, %v", i, r.status, err)
		}
		if i > 0 && !r.done {
			t.Errorf("answer %d: [DONE] not seen", i)
		}
	}
}

func TestReportAndChart(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for rep := 1; rep <= 3; rep++ {
		for p, f := range map[string]float64{pDirect: 1, pNginx: 0.6, pGlmctl: 0.3, pNoAudit: 0.35} {
			enc.Encode(Result{Measure: mChat, Path: p, Rep: rep, PerSec: 50000 * f, ProxyCPUUsPerReq: 20 / f})
			enc.Encode(Result{Measure: mSerial, Path: p, Rep: rep, LatP50: 0.1 / f, LatP99: 0.3 / f})
			enc.Encode(Result{Measure: mStream, Path: p, Rep: rep, PerSec: 1900 * f, TTFBP50: 5 / f})
			enc.Encode(Result{Measure: mHold, Path: p, Rep: rep, Open: 1000, KiBPerStream: 20 / f})
		}
	}
	enc.Encode(Result{Measure: mHoldBig, Path: pGlmctl, Open: 9000, RSSIdleKiB: 20000, KiBPerStream: 98})
	for _, p := range chartPaths {
		for _, rate := range []float64{1000, 5000, 20000} {
			enc.Encode(Result{Measure: mOpen, Path: p, Rate: rate, PerSec: rate, LatP50: 0.2, LatP99: 1})
		}
	}
	in := filepath.Join(dir, "r.jsonl")
	if err := os.WriteFile(in, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	md, svg, csv := filepath.Join(dir, "r.md"), filepath.Join(dir, "c.svg"), filepath.Join(dir, "c.csv")
	stdout := os.Stdout
	os.Stdout, _ = os.Open(os.DevNull)
	err := cmdReport([]string{"-in", in, "-md", md, "-svg", svg, "-csv", csv})
	os.Stdout = stdout
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(md)
	for _, want := range []string{"| non-stream chat, 64 connections, req/s | 50.0 k | 30.0 k | 15.0 k | 0.50× | 0.30× |",
		"977 MiB (no, 9000 open, extrapolated)", "on 15.0 k, off 17.5 k: -14 %"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	s, _ := os.ReadFile(svg)
	if err := xml.Unmarshal(s, new(struct{})); err != nil {
		t.Errorf("chart is not well-formed XML: %v", err)
	}
}
