package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// hopHeaders are the hop-by-hop headers (RFC 9110 §7.6.1) a proxy never
// passes on, in either direction.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// credentialHeaders are the request headers that can carry a credential;
// none reaches the upstream.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Api-Key", "X-Api-Key",
	"X-Auth-Token", "X-Goog-Api-Key", "Openai-Api-Key"}

// dropRequestHeaders are every request header the upstream never gets: hop
// by hop, credentials, and forwarding headers (the client's word about
// itself, which the guard does not pass on).
var dropRequestHeaders = func() map[string]bool {
	m := map[string]bool{"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true,
		"X-Forwarded-Proto": true, "X-Request-Id": true, "Content-Length": true, "Host": true}
	for _, h := range append(slices.Clone(hopHeaders), credentialHeaders...) {
		m[h] = true
	}
	return m
}()

// hostOf returns the host part of a host:port address.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// outRequest is the request the guard sends upstream: exactly the path the
// guard checked, the query as sent, the request id, and the client's
// headers less everything in dropRequestHeaders, the headers named in its
// Connection header, and X-Real-IP unless from a trusted proxy. The
// client's header map is read as it is (writeRequest skips what keep
// refuses): no copy of it is made per request.
type outRequest struct {
	method, path, rawQuery string
	header                 http.Header // the client's; read only
	named                  []string    // named in the client's Connection header
	realIP                 bool        // X-Real-IP passes: the client is a trusted proxy
	requestID              string
}

// keep says whether the client's header k goes upstream.
func (o *outRequest) keep(k string) bool {
	if dropRequestHeaders[k] || slices.Contains(o.named, k) {
		return false
	}
	return k != "X-Real-Ip" || o.realIP
}

// outbound describes the upstream request for r.
func (g *Guard) outbound(r *http.Request, x *exchange) *outRequest {
	o := &outRequest{method: r.Method, path: x.path, rawQuery: r.URL.RawQuery, header: r.Header, requestID: x.id}
	for _, c := range r.Header["Connection"] {
		for f := range strings.SplitSeq(c, ",") {
			o.named = append(o.named, http.CanonicalHeaderKey(strings.TrimSpace(f)))
		}
	}
	if _, ok := r.Header["X-Real-Ip"]; ok {
		ip, err := netip.ParseAddr(hostOf(r.RemoteAddr))
		o.realIP = err == nil && x.s.isTrusted(ip)
	}
	return o
}

// proxy sends an admitted request upstream and its answer back: headers
// filtered, a stream event by event (flushed as each read from upstream
// completes), a JSON answer read for its usage on the way.
func (g *Guard) proxy(w *recorder, r *http.Request, x *exchange) {
	// From here to the end of the answer, a shutdown whose drain runs out
	// can end the exchange properly (answerSet.cut).
	g.answering.add(x, x.up.abort) // removed at the end of finish
	x.forwarding = true
	resp, err := g.upstream.do(r.Context(), g.outbound(r, x), x.body, x.s.upstreamHeaderTimeout, &x.up)
	if err != nil {
		if r.Context().Err() != nil {
			x.errMsg = "client_closed"
			return
		}
		if x.cut.Load() {
			x.errMsg = codeShuttingDown
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, typeServer, codeShuttingDown, "The server is shutting down; retry the request shortly.")
			return
		}
		if errors.Is(err, errHeaderTimeout) {
			// The model server takes requests but answers none: new
			// requests are refused at once for a while (checkReady), not
			// piled onto it.
			if g.hung.markHung(hungFor) {
				g.log.Warn("the model server sent no answer in time: new requests get 503 for a while", "timeout", x.s.upstreamHeaderTimeout.String())
			}
			x.errMsg = codeUpstreamTimeout
			w.Header().Set("Retry-After", strconv.Itoa(int(hungFor.Seconds())))
			writeError(w, http.StatusGatewayTimeout, typeServer, codeUpstreamTimeout, "The model server did not answer in time; try again shortly.")
			return
		}
		g.log.Warn("upstream unreachable", "request_id", x.id, "error", err)
		x.errMsg = codeUpstream
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusBadGateway, typeServer, codeUpstream, "The model server cannot be reached; try again shortly.")
		return
	}
	defer resp.Body.Close()
	// Sent, and in the received record: the request body is not held for
	// the life of a stream (a long conversation's prompt is many KiB).
	x.body, x.reqBody = nil, nil
	x.upstreamStatus = resp.StatusCode
	copyResponseHeaders(w.Header(), resp.Header)
	ct := resp.Header.Get("Content-Type")
	stream := resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "text/event-stream")
	if stream {
		w.Header().Del("Content-Length")
	} else if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(resp.StatusCode)
	switch {
	case stream && x.rt.response != respPass:
		f := &sseFilter{src: resp.Body, x: x}
		g.copyStream(w, f, x)
	default:
		u := &usageReader{src: resp.Body, x: x, skip: true}
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "application/json") && x.rt.response != respPass {
			u.skip = false
			if n := resp.ContentLength; n > 0 && n <= maxUsageBody {
				u.buf = make([]byte, 0, n)
			}
			if x.rt.response == respModels {
				u.models = g.m.learnModels
			}
		}
		g.copyBody(w, u, x)
	}
}

// copyResponseHeaders copies the upstream's answer headers, less hop-by-hop
// ones, the upstream's own request id and rate-limit headers (the guard's
// are the ones in force).
func copyResponseHeaders(dst, src http.Header) {
	var named []string
	for _, c := range src["Connection"] {
		for f := range strings.SplitSeq(c, ",") {
			named = append(named, http.CanonicalHeaderKey(strings.TrimSpace(f)))
		}
	}
	for k, vv := range src {
		if slices.Contains(hopHeaders, k) || slices.Contains(named, k) || k == "X-Request-Id" ||
			strings.HasPrefix(k, "X-Ratelimit-") || k == "Content-Length" {
			continue
		}
		dst[k] = vv
	}
}

// copyBuffers recycles the copy buffers of non-stream answers.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}

// copyBody passes a non-stream answer through. An upstream that fails
// mid-body aborts the client's connection (its headers are gone, and a
// cut body must not look complete).
func (g *Guard) copyBody(w *recorder, src io.Reader, x *exchange) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				x.errMsg = "client_closed"
				return
			}
		}
		switch {
		case rerr == io.EOF:
			return
		case rerr != nil:
			if x.cut.Load() {
				x.errMsg = codeShuttingDown
			}
			if x.errMsg == "" {
				x.errMsg = "incomplete"
			}
			g.log.Debug("upstream answer cut", "request_id", x.id, "error", rerr)
			x.aborted = true
			panic(http.ErrAbortHandler)
		}
	}
}

// streamCutEvent ends a stream the upstream cut: an SSE event in OpenAI's
// error shape, so SDKs raise a clear error instead of seeing a silent end.
var streamCutEvent = []byte(`data: {"error":{"message":"The model server ended the stream early; the answer is incomplete.","type":"server_error","param":null,"code":"upstream_incomplete"}}` + "\n\n")

// shutdownCutEvent ends a stream still open when glmctl's drain_timeout ran
// out: the client learns why, and that a retry is the remedy.
var shutdownCutEvent = []byte(`data: {"error":{"message":"The server is shutting down and ended this stream; the answer is incomplete. Retry the request.","type":"server_error","param":null,"code":"` + codeShuttingDown + `"}}` + "\n\n")

// codeShuttingDown is the error code of an answer the shutdown ended.
const codeShuttingDown = "server_shutting_down"

// copyStream passes an event stream through, flushing after every read
// from the upstream.
func (g *Guard) copyStream(w *recorder, f *sseFilter, x *exchange) {
	flush := http.NewResponseController(w.ResponseWriter)
	_ = flush.Flush() // the headers now: the client sees the stream open
	for {
		out, rerr := f.next()
		if len(out) > 0 {
			if _, werr := w.Write(out); werr != nil {
				x.errMsg = "client_closed"
				return
			}
			if werr := flush.Flush(); werr != nil {
				x.errMsg = "client_closed"
				return
			}
		}
		switch {
		case rerr == io.EOF:
			return
		case rerr != nil && x.cut.Load():
			x.errMsg = codeShuttingDown
			g.log.Debug("stream ended by the shutdown", "request_id", x.id)
			_, _ = w.Write(shutdownCutEvent)
			_ = flush.Flush()
			return
		case rerr != nil:
			x.errMsg = "incomplete"
			g.log.Warn("upstream cut a stream", "request_id", x.id, "error", rerr)
			_, _ = w.Write(streamCutEvent)
			_ = flush.Flush()
			return
		}
	}
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

// findUsage returns the top-level usage object of a JSON response, read
// with exact names like the request (nil: none, or not a valid one).
func findUsage(body []byte) *usageJSON {
	if !json.Valid(body) {
		return nil
	}
	var us *usageJSON
	_ = eachMember(body, func(name []byte, v span) error {
		if string(name) == "usage" {
			us = parseUsage(body[v.start:v.end])
		}
		return nil
	})
	return us
}

// parseUsage reads a usage object (valid JSON): its integer token counts.
// Anything else than an object of integers is no usage.
func parseUsage(obj []byte) *usageJSON {
	if len(obj) == 0 || obj[0] != '{' {
		return nil
	}
	var u usageJSON
	err := eachMember(obj, func(name []byte, v span) error {
		var dst *int64
		switch string(name) {
		case "prompt_tokens":
			dst = &u.PromptTokens
		case "completion_tokens":
			dst = &u.CompletionTokens
		case "total_tokens":
			dst = &u.TotalTokens
		default:
			return nil
		}
		raw := obj[v.start:v.end]
		if string(raw) == "null" {
			return nil
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return err
		}
		*dst = n
		return nil
	})
	if err != nil {
		return nil
	}
	return &u
}

// sseFilter passes a server-sent event stream through event by event, reads
// the usage chunk, and drops it when the client did not ask for it.
type sseFilter struct {
	src    io.ReadCloser
	x      *exchange
	in     []byte // bytes of the event being received
	out    []byte // complete events ready for the client (a window on outBuf)
	outBuf []byte
	err    error  // from src, returned once in and out are drained
	unread []byte // what Read has not handed out yet of next's last result
}

// next reads from the upstream until it has complete events to pass on,
// and returns them (valid until the next call), or the upstream's error
// (io.EOF at the end) once everything before it is out.
func (f *sseFilter) next() ([]byte, error) {
	for len(f.out) == 0 {
		if f.err != nil {
			if len(f.in) > 0 { // a last event without its blank line
				f.out, f.in = append(f.outBuf[:0], f.in...), f.in[:0]
				break
			}
			if errors.Is(f.err, io.EOF) {
				f.x.upstreamDone = true
			}
			return nil, f.err
		}
		if cap(f.in)-len(f.in) < 256 {
			f.in = slices.Grow(f.in, 1024) // an event or two; grows for larger ones
		}
		n, err := f.src.Read(f.in[len(f.in):cap(f.in)])
		f.in = f.in[:len(f.in)+n]
		f.err = err
		f.split()
	}
	out := f.out
	f.out = f.out[len(f.out):]
	f.x.keepBody(out)
	return out, nil
}

// Read reads the filtered stream through next (the tests and fuzzers read
// the filter this way, so they exercise the proxy's own path).
func (f *sseFilter) Read(p []byte) (int, error) {
	if len(f.unread) == 0 {
		out, err := f.next()
		if err != nil {
			return 0, err
		}
		f.unread = out
	}
	n := copy(p, f.unread)
	f.unread = f.unread[n:]
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
	if data, ok := singleDataLine(ev); ok && usageOnlyNull(data) {
		// Every chunk of a stream asked with include_usage carries
		// "usage":null: passed on without validating the whole event.
		return true
	}
	var data []byte
	for _, line := range bytes.Split(ev, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if rest, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(rest, []byte(" "))...)
		}
	}
	if !json.Valid(data) || len(bytes.TrimSpace(data)) == 0 || bytes.TrimSpace(data)[0] != '{' {
		return true
	}
	var usage *usageJSON
	choices := -1 // absent
	_ = eachMember(data, func(name []byte, v span) error {
		switch string(name) {
		case "usage":
			usage = parseUsage(data[v.start:v.end])
		case "choices":
			choices = 0
			if inner := bytes.TrimSpace(data[v.start:v.end]); len(inner) > 2 && inner[0] == '[' {
				if len(bytes.TrimSpace(inner[1:len(inner)-1])) > 0 {
					choices = 1
				}
			}
		}
		return nil
	})
	if usage == nil {
		return true
	}
	f.x.setUsage(usage)
	return !(f.x.hideUsage && choices <= 0)
}

func (f *sseFilter) Close() error { return f.src.Close() }

// singleDataLine returns the payload of an event that is one "data:" line.
func singleDataLine(ev []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(ev, []byte("data:"))
	if !ok {
		return nil, false
	}
	rest = bytes.TrimRight(rest, "\r\n")
	if bytes.IndexByte(rest, '\n') >= 0 || bytes.IndexByte(rest, '\r') >= 0 {
		return nil, false
	}
	return bytes.TrimPrefix(rest, []byte(" ")), true
}

// usageOnlyNull reports whether data is an object whose every top-level
// "usage" member is null, read without validating the rest: true only
// where a full parse of valid JSON would find no usage, and for malformed
// JSON (which the full parse passes on without usage too). A member name
// with an escape, or anything it cannot tell, gives false: the full parse
// decides.
func usageOnlyNull(data []byte) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	depth, found := 0, false
	for ; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			end := stringEnd(data, i)
			if depth == 1 {
				j := skipSpace(data, end)
				if j < len(data) && data[j] == ':' { // a member name
					name := data[i+1 : max(end-1, i+1)]
					if bytes.IndexByte(name, '\\') >= 0 {
						return false
					}
					if string(name) == "usage" {
						v := skipSpace(data, j+1)
						if !bytes.HasPrefix(data[v:], []byte("null")) {
							return false
						}
						if k := v + 4; k < len(data) && !bytes.ContainsRune([]byte(" \t\r\n,}"), rune(data[k])) {
							return false
						}
						found = true
					}
				}
			}
			i = end - 1
		}
	}
	return found
}
