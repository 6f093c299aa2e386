package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// newProxy builds the reverse proxy to the upstream: a pooled transport sized
// for hundreds of concurrent requests, every stream chunk flushed as it
// arrives, usage read on the way back.
func (g *Guard) newProxy(maxConns int) *httputil.ReverseProxy {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	idle := min(1024, maxConns)
	tr := &http.Transport{
		Proxy:               nil, // never via an environment proxy
		DialContext:         dialer.DialContext,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle, // Go's default of 2 would redial under load
		// Upstream connections count against the descriptor budget too:
		// never more than client connections allowed.
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through as they are
		WriteBufferSize:       8 << 10,
		ReadBufferSize:        8 << 10,
	}
	g.transport = tr
	if g.up.socket != "" {
		sock := g.up.socket
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", sock)
		}
	}
	return &httputil.ReverseProxy{
		Rewrite:   g.rewrite,
		Transport: tr,
		// 0 here, and ReverseProxy itself switches to -1 (flush every write,
		// headers at once) for text/event-stream and for bodies of unknown
		// length: streams go out chunk by chunk while a JSON answer of known
		// length leaves in one write(2) instead of a header flush from a
		// timer goroutine plus a body flush.
		FlushInterval:  0,
		ErrorHandler:   g.proxyError,
		ModifyResponse: g.modifyResponse,
		BufferPool:     newBufferPool(8 << 10),
		// Copy errors of abandoned streams are routine: debug level.
		ErrorLog: g.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
}

// rewrite sends the request to the upstream on exactly the path the guard
// checked, without the client's credentials.
func (g *Guard) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeFrom(pr.In.Context())
	u := pr.Out.URL
	u.Scheme, u.Host, u.Path, u.RawPath = g.up.scheme, g.up.host, x.path, ""
	u.User = nil
	pr.Out.Host = g.up.host
	h := pr.Out.Header
	for _, name := range credentialHeaders {
		h.Del(name)
	}
	if ip, err := netip.ParseAddr(hostOf(pr.In.RemoteAddr)); err != nil || !x.s.isTrusted(ip) {
		h.Del("X-Real-Ip")
	}
	h.Set("X-Request-Id", x.id)
	if x.body != nil {
		// A body the transport knows to be in memory goes out with the
		// headers in one write(2) (ReverseProxy's own wrapper makes it flush
		// the headers first), and GetBody lets the transport resend it when
		// the upstream closed an idle connection just as it was reused.
		b := x.body
		pr.Out.Body = io.NopCloser(bytes.NewReader(b))
		pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		pr.Out.ContentLength = int64(len(b))
	}
}

// credentialHeaders are the request headers that can carry a credential;
// none reaches the upstream.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Api-Key", "X-Api-Key",
	"X-Auth-Token", "X-Goog-Api-Key", "Openai-Api-Key"}

// hostOf returns the host part of a host:port address.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// proxyError answers 502 when the upstream cannot be reached; a client that
// went away gets nothing.
func (g *Guard) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeFrom(r.Context())
	if r.Context().Err() != nil {
		x.errMsg = "client_closed"
		return
	}
	g.log.Warn("upstream unreachable", "request_id", x.id, "error", err)
	x.errMsg = codeUpstream
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusBadGateway, typeServer, codeUpstream, "The model server cannot be reached; try again shortly.")
}

// modifyResponse wraps the upstream body to read usage (and hide the usage
// chunk the guard asked for on the client's behalf).
func (g *Guard) modifyResponse(resp *http.Response) error {
	x := exchangeFrom(resp.Request.Context())
	x.upstreamStatus = resp.StatusCode
	h := resp.Header
	h.Del("X-Request-Id")
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-ratelimit-") {
			h.Del(k)
		}
	}
	ct := h.Get("Content-Type")
	switch {
	case x.rt.response == respPass:
		resp.Body = &usageReader{src: resp.Body, x: x, skip: true}
	case resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "text/event-stream"):
		resp.Body = &sseFilter{src: resp.Body, x: x}
		h.Del("Content-Length")
		resp.ContentLength = -1
	case resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "application/json"):
		u := &usageReader{src: resp.Body, x: x}
		if n := resp.ContentLength; n > 0 && n <= maxUsageBody {
			u.buf = make([]byte, 0, n)
		}
		if x.rt.response == respModels {
			u.models = g.m.learnModels
		}
		resp.Body = u
	default:
		resp.Body = &usageReader{src: resp.Body, x: x, skip: true}
	}
	return nil
}

// usageJSON is OpenAI's usage object.
type usageJSON struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// maxUsageTokens bounds the token counts taken from an upstream's usage:
// the upstream's bytes are as untrusted as a client's, and no count may
// wrap a settlement or a header.
const maxUsageTokens = 1 << 40

func clampUsage(n int64) int64 { return min(max(n, 0), maxUsageTokens) }

func (x *exchange) setUsage(u *usageJSON) {
	x.usageSeen = true
	p, c, total := clampUsage(u.PromptTokens), clampUsage(u.CompletionTokens), clampUsage(u.TotalTokens)
	x.promptTokens, x.completionTokens = p, c
	if c == 0 && total > p {
		x.completionTokens = total - p
	}
}

// objectAt returns the JSON object at the start of b (after blanks), up to
// its matching brace, or nil.
func objectAt(b []byte) []byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	depth, inString, escaped := 0, false, false
	for i, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return b[:i+1]
			}
		}
	}
	return nil
}

// maxUsageBody bounds how much of a JSON response is kept to find its usage;
// a longer response is charged its reservation.
const maxUsageBody = 8 << 20

// usageReader passes a JSON body through and reads its usage at the end.
type usageReader struct {
	src  io.ReadCloser
	x    *exchange
	skip bool // only note the end, do not parse
	buf  []byte
	over bool
	// models, when set, gets the whole body of a /v1/models answer.
	models func([]byte)
}

func (u *usageReader) Read(p []byte) (int, error) {
	n, err := u.src.Read(p)
	u.x.keepBody(p[:n])
	if !u.skip && !u.over {
		if len(u.buf)+n > maxUsageBody {
			u.over, u.buf = true, nil
		} else {
			u.buf = append(u.buf, p[:n]...)
		}
	}
	if errors.Is(err, io.EOF) {
		u.x.upstreamDone = true
		if !u.skip && !u.over {
			if u.models != nil {
				u.models(u.buf)
			} else if us := findUsage(u.buf); us != nil {
				u.x.setUsage(us)
			}
			u.buf = nil
		}
	}
	return n, err
}

func (u *usageReader) Close() error { return u.src.Close() }

// findUsage returns the top-level usage object of a JSON response. OpenAI and
// vLLM write it last, so the last `"usage":` is tried first (decoding only
// that object); if that fails the whole body is decoded.
func findUsage(body []byte) *usageJSON {
	const tag = `"usage":`
	if i := bytes.LastIndex(body, []byte(tag)); i >= 0 {
		var us usageJSON
		obj := objectAt(body[i+len(tag):])
		if obj != nil && json.Unmarshal(obj, &us) == nil && (us.PromptTokens > 0 || us.TotalTokens > 0) {
			return &us
		}
	}
	var whole struct {
		Usage *usageJSON `json:"usage"`
	}
	if json.Unmarshal(body, &whole) != nil {
		return nil
	}
	return whole.Usage
}

// sseFilter passes a server-sent event stream through event by event, reads
// the usage chunk, and drops it when the client did not ask for it.
type sseFilter struct {
	src    io.ReadCloser
	x      *exchange
	in     []byte // bytes of the event being received
	out    []byte // complete events ready for the client (a window on outBuf)
	outBuf []byte
	err    error // from src, returned once in and out are drained
}

func (f *sseFilter) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.err != nil {
			if len(f.in) > 0 { // a last event without its blank line
				f.out, f.in = append(f.outBuf[:0], f.in...), f.in[:0]
				break
			}
			if errors.Is(f.err, io.EOF) {
				f.x.upstreamDone = true
			}
			return 0, f.err
		}
		if cap(f.in)-len(f.in) < 1024 {
			f.in = slices.Grow(f.in, 4096)
		}
		n, err := f.src.Read(f.in[len(f.in):cap(f.in)])
		f.in = f.in[:len(f.in)+n]
		f.err = err
		f.split()
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	f.x.keepBody(p[:n])
	return n, nil
}

// split moves every complete event from in to out.
func (f *sseFilter) split() {
	if len(f.out) == 0 {
		f.out = f.outBuf[:0]
	}
	start := 0
	for {
		i, sep := eventEnd(f.in[start:])
		if i < 0 {
			break
		}
		ev := f.in[start : start+i+sep]
		if f.keep(ev) {
			f.out = append(f.out, ev...)
			if cap(f.out) > cap(f.outBuf) {
				f.outBuf = f.out[:0]
			}
		}
		start += i + sep
	}
	if start > 0 {
		f.in = f.in[:copy(f.in, f.in[start:])]
	}
}

// eventEnd finds the blank line ending an event: its index and length.
func eventEnd(b []byte) (int, int) {
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		if j := bytes.Index(b[:i+1], []byte("\r\n\r\n")); j >= 0 {
			return j, 4
		}
		return i, 2
	}
	if j := bytes.Index(b, []byte("\r\n\r\n")); j >= 0 {
		return j, 4
	}
	return -1, 0
}

// keep reads usage from an event and says whether the client gets it.
func (f *sseFilter) keep(ev []byte) bool {
	if !bytes.Contains(ev, []byte(`"usage"`)) {
		return true
	}
	var data []byte
	for _, line := range bytes.Split(ev, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if rest, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(rest, []byte(" "))...)
		}
	}
	var chunk struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   *usageJSON        `json:"usage"`
	}
	if json.Unmarshal(data, &chunk) != nil || chunk.Usage == nil {
		return true
	}
	f.x.setUsage(chunk.Usage)
	return !(f.x.hideUsage && len(chunk.Choices) == 0)
}

func (f *sseFilter) Close() error { return f.src.Close() }

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct {
	size int
	pool sync.Pool
}

func newBufferPool(size int) *bufferPool {
	return &bufferPool{size: size}
}

// Get returns a buffer of the pool's size.
func (b *bufferPool) Get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, b.size)
}

// Put returns a buffer to the pool.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == b.size {
		buf = buf[:b.size]
		b.pool.Put(&buf)
	}
}
