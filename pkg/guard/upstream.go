package guard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// upstreamClient is the guard's HTTP/1.1 client to the model server. It
// keeps a pool of connections and uses each from the request's own
// goroutine: the request is written and the answer read (with net/http's
// own response parser and body framing) where the handler runs, instead of
// net/http.Transport's two extra goroutines per connection and the channel
// hand-offs between them, which were a fifth of the guard's CPU per
// request (docs/BENCHMARKS.md). A client that goes away cancels its
// upstream request at once (the connection's deadline is set in the past).
type upstreamClient struct {
	dial    func(ctx context.Context) (net.Conn, error)
	host    string
	maxIdle int
	idleFor time.Duration

	slots chan struct{} // one per open connection, idle or busy: at most maxConns

	mu   sync.Mutex
	idle []*upConn // most recently used last
}

// upConn is one kept-alive connection to the upstream.
type upConn struct {
	c         net.Conn
	br        *bufio.Reader
	idleSince time.Time
	reused    bool
}

// upstreamReadBuffer sizes each upstream connection's read buffer. An open
// stream holds its buffer for as long as the model generates, so it is kept
// small: an answer's head and one SSE chunk fit, longer lines and bodies are
// read in several steps (textproto joins long header lines; a body read into
// a larger buffer bypasses it).
const upstreamReadBuffer = 2 << 10

// upstreamBuffer sizes the pooled buffers requests are written with.
const upstreamBuffer = 4 << 10

func newUpstreamClient(up upstream, maxConns int) *upstreamClient {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	network, addr := "tcp", up.host
	if up.socket != "" {
		network, addr = "unix", up.socket
	}
	return &upstreamClient{
		dial:    func(ctx context.Context) (net.Conn, error) { return dialer.DialContext(ctx, network, addr) },
		host:    up.host,
		maxIdle: min(1024, maxConns),
		idleFor: 90 * time.Second,
		slots:   make(chan struct{}, maxConns),
	}
}

// get returns an idle connection, or a new one once a slot is free.
func (u *upstreamClient) get(ctx context.Context) (*upConn, error) {
	now := time.Now()
	u.mu.Lock()
	for len(u.idle) > 0 {
		pc := u.idle[len(u.idle)-1]
		u.idle = u.idle[:len(u.idle)-1]
		if now.Sub(pc.idleSince) < u.idleFor {
			u.mu.Unlock()
			pc.reused = true
			return pc, nil
		}
		u.discard(pc)
	}
	u.mu.Unlock()
	select {
	case u.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c, err := u.dial(ctx)
	if err != nil {
		<-u.slots
		return nil, err
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, upstreamReadBuffer)}, nil
}

// put returns a connection whose answer was read to its end to the pool.
func (u *upstreamClient) put(pc *upConn) {
	pc.idleSince = time.Now()
	u.mu.Lock()
	if len(u.idle) >= u.maxIdle {
		u.mu.Unlock()
		u.discard(pc)
		return
	}
	u.idle = append(u.idle, pc)
	u.mu.Unlock()
}

// discard closes a connection and frees its slot.
func (u *upstreamClient) discard(pc *upConn) {
	_ = pc.c.Close()
	<-u.slots
}

// closeIdle closes every idle connection.
func (u *upstreamClient) closeIdle() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, pc := range idle {
		u.discard(pc)
	}
}

// do sends req and returns the answer; its Body must be closed, which hands
// the connection back (or closes it when the answer was not read to its
// end). A request that fails on a reused connection before any byte of an
// answer arrived (the upstream closed it while idle) is sent again once on
// a new connection: its body is in memory.
func (u *upstreamClient) do(ctx context.Context, req *outRequest, body []byte, headerTimeout time.Duration, h *upHandle) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, err := u.get(ctx)
		if err != nil {
			return nil, err
		}
		if !h.set(pc.c) {
			u.discard(pc)
			return nil, errAborted
		}
		resp, err := u.roundTrip(ctx, pc, req, body, headerTimeout)
		if err != nil && h.isAborted() {
			u.discard(pc)
			return nil, errAborted
		}
		if err == nil {
			return resp, nil
		}
		u.discard(pc)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, errHeaderTimeout) || !pc.reused || attempt > 0 || !staleConn(err) {
			return nil, err
		}
	}
}

// staleConn reports errors of a kept-alive connection the upstream had
// closed: nothing of an answer was read.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// errAborted: the exchange's upstream I/O was aborted (upHandle.abort).
var errAborted = errors.New("aborted by the guard")

// upHandle lets another goroutine abort an exchange's upstream I/O, on
// whichever connection it is: the shutdown's cut (answerSet), from the
// request's start to the end of its answer.
type upHandle struct {
	mu      sync.Mutex
	c       net.Conn
	aborted bool
}

// set records the connection in use; false when already aborted.
func (h *upHandle) set(c net.Conn) bool {
	if h == nil {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.c = c
	return !h.aborted
}

// abort makes the pending and next reads and writes of the exchange's
// upstream connection fail at once; the connection is not reused.
func (h *upHandle) abort() {
	h.mu.Lock()
	h.aborted = true
	c := h.c
	h.mu.Unlock()
	if c != nil {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
}

func (h *upHandle) isAborted() bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.aborted
}

// errHeaderTimeout: the upstream sent no answer headers in time.
var errHeaderTimeout = errors.New("the model server sent no answer in time")

func (u *upstreamClient) roundTrip(ctx context.Context, pc *upConn, req *outRequest, body []byte, headerTimeout time.Duration) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	if err := writeRequest(pc.c, u.host, req, body); err != nil {
		stop()
		return nil, fmt.Errorf("write request: %w", err)
	}
	var resp *http.Response
	var err error
	_ = pc.c.SetReadDeadline(time.Now().Add(headerTimeout))
	for {
		resp, err = http.ReadResponse(pc.br, answerTo(req.method))
		if err != nil {
			stop()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				return nil, fmt.Errorf("%w (%s)", errHeaderTimeout, headerTimeout)
			}
			return nil, fmt.Errorf("read answer: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		_ = resp.Body.Close() // 1xx: the real answer follows
	}
	if ctx.Err() == nil {
		_ = pc.c.SetReadDeadline(time.Time{}) // the body (a stream) has no deadline
	}
	resp.Body = &upBody{rc: resp.Body, u: u, pc: pc, stop: stop, keep: !resp.Close}
	return resp, nil
}

// writers recycle the buffers requests are written with: a connection
// needs one only while it writes, not for the whole life of a stream.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, upstreamBuffer) }}

// escapedPath is p (decoded, as the guard checked it) escaped for a
// request line: as it is when it holds only characters that never need
// escaping (every route of the table), else by net/url — a decoded %0D%0A
// must never reach the upstream as a line break.
func escapedPath(p string) string {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') {
			return (&url.URL{Path: p}).EscapedPath()
		}
	}
	return p
}

// answerTo returns a request of the method for http.ReadResponse, which
// reads only its Method (a HEAD answer has no body): shared and never
// changed, except for methods outside the route table.
func answerTo(method string) *http.Request {
	if r, ok := methodRequests[method]; ok {
		return r
	}
	return &http.Request{Method: method}
}

var methodRequests = map[string]*http.Request{
	http.MethodGet: {Method: http.MethodGet}, http.MethodPost: {Method: http.MethodPost},
	http.MethodHead: {Method: http.MethodHead}, http.MethodDelete: {Method: http.MethodDelete},
}

// writeRequest writes the request line, headers and body in one flush.
func writeRequest(c net.Conn, host string, req *outRequest, body []byte) error {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() { bw.Reset(nil); writers.Put(bw) }()
	bw.WriteString(req.method)
	bw.WriteByte(' ')
	bw.WriteString(escapedPath(req.path))
	if req.rawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(req.rawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\nX-Request-Id: ")
	bw.WriteString(req.requestID)
	bw.WriteString("\r\n")
	// The client's headers come from net/http's request parser (no CR or LF
	// can be in them): written as they are, unsorted.
	for k, vv := range req.header {
		if !req.keep(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if body != nil || req.method == http.MethodPost {
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.Itoa(len(body)))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(body)
	return bw.Flush()
}

// upBody is an answer's body; closing it hands the connection back when the
// body was read to its end and the upstream keeps the connection alive.
type upBody struct {
	rc   io.ReadCloser
	u    *upstreamClient
	pc   *upConn
	stop func() bool
	keep bool
	eof  bool
	done bool
}

func (b *upBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *upBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if !b.eof {
		// net/http would read the rest of the body to its end: a stream
		// may not have one. The connection is not reused anyway.
		_ = b.pc.c.SetDeadline(time.Unix(1, 0))
	}
	_ = b.rc.Close()
	// stop false: the request's context ended and the deadline was (or is
	// being) set: the connection cannot be reused.
	if b.stop() && b.eof && b.keep {
		b.u.put(b.pc)
		return nil
	}
	b.u.discard(b.pc)
	return nil
}

// hungFor is how long an upstream that sent no answer in time is refused
// new requests (then one gets through and tells).
const hungFor = 5 * time.Second

// hungMark remembers until when the upstream counts as hung.
type hungMark struct{ until atomic.Int64 }

// markHung marks the upstream hung for d; true when it was not already.
func (h *hungMark) markHung(d time.Duration) bool {
	now := time.Now()
	was := h.until.Swap(now.Add(d).UnixNano())
	return was < now.UnixNano()
}

func (h *hungMark) isHung() bool { return time.Now().UnixNano() < h.until.Load() }
