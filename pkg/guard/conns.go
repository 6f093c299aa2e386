package guard

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Connection caps. A guard in front of a model must not let anonymous
// clients hold its file descriptors: every connection is counted, and one
// over a cap is answered at once with a fixed response (no byte of it read)
// and closed:
//
//   - max_connections: all open client connections (503 + Retry-After);
//   - max_unauthenticated_per_client: connections from one address on which
//     no request has authenticated yet (429). Addresses in trusted_proxies
//     are exempt (a load balancer carries many clients).
//
// Together with the header and body deadlines and the refusal of a request
// before its body is read, this bounds what a flood can take; the
// supervisor's own descriptors are kept out of reach (see connectionCap).

// Reasons a connection is refused, as counted by
// glmctl_guard_connections_refused_total.
const (
	connMaxConnections = "max_connections"
	connPerClient      = "per_client"
)

// refusers bounds the goroutines answering refused connections; beyond it a
// refused connection is closed without an answer.
const refusers = 64

// connLimiter counts the guard's client connections.
type connLimiter struct {
	log hclog.Logger
	m   *metrics
	tls bool

	mu        sync.Mutex
	open      int
	unauth    map[netip.Addr]int
	maxConns  int
	maxUnauth int
	trusted   []netip.Prefix
	// refusal logging: the first refusal of a burst is logged, then a
	// summary at most every refusalLogEvery.
	refusedSince map[string]int
	lastLog      time.Time

	refusing chan struct{} // semaphore of refusers
}

const refusalLogEvery = 10 * time.Second

func newConnLimiter(log hclog.Logger, m *metrics) *connLimiter {
	return &connLimiter{log: log, m: m, unauth: map[netip.Addr]int{}, refusedSince: map[string]int{},
		refusing: make(chan struct{}, refusers)}
}

// setCaps installs the caps of new settings; connections already open stay.
func (l *connLimiter) setCaps(maxConns, maxUnauth int, trusted []netip.Prefix) {
	l.mu.Lock()
	l.maxConns, l.maxUnauth, l.trusted = maxConns, maxUnauth, trusted
	l.mu.Unlock()
}

func (l *connLimiter) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admit counts a new connection from addr, or says why it is refused.
func (l *connLimiter) admit(addr netip.Addr) (exempt bool, refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.open >= l.maxConns {
		return false, connMaxConnections
	}
	exempt = !addr.IsValid() || l.isTrusted(addr)
	if !exempt {
		if l.maxUnauth > 0 && l.unauth[addr] >= l.maxUnauth {
			return false, connPerClient
		}
		l.unauth[addr]++
		l.m.connsUnauth.Inc()
	}
	l.open++
	l.m.connsOpen.Inc()
	return exempt, ""
}

// authenticated moves c out of its address's unauthenticated count.
func (l *connLimiter) authenticated(c *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.authed || c.closed || c.exempt {
		c.authed = true
		return
	}
	c.authed = true
	l.dropUnauth(c.addr)
}

func (l *connLimiter) dropUnauth(a netip.Addr) {
	if n := l.unauth[a] - 1; n > 0 {
		l.unauth[a] = n
	} else {
		delete(l.unauth, a)
	}
	l.m.connsUnauth.Dec()
}

// closed forgets c.
func (l *connLimiter) closed(c *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if !c.authed && !c.exempt {
		l.dropUnauth(c.addr)
	}
	l.open--
	l.m.connsOpen.Dec()
}

// Open returns the number of open client connections.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// refuse answers and closes a connection over a cap. The answer waits for
// the request head (at most refusalWait): a client that has not sent its
// request would take an early answer for a stray one. Refusals run in at
// most `refusers` goroutines; beyond that a connection is closed at once.
func (l *connLimiter) refuse(c net.Conn, why string) {
	l.m.connsRefused.WithLabelValues(why).Inc()
	l.noteRefusal(why)
	if l.tls { // no handshake has happened: nothing can be said
		_ = c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		resp := refusal503
		if why == connPerClient {
			resp = refusal429
		}
		_ = c.SetDeadline(time.Now().Add(refusalWait))
		var buf [4096]byte
		var head []byte
		for !bytes.Contains(head, []byte("\r\n\r\n")) && len(head) < 16<<10 {
			n, err := c.Read(buf[:])
			if err != nil {
				return
			}
			head = append(head, buf[:n]...)
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
		// Read what else the client sent before closing, so the close does
		// not reset the connection under the answer.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		for {
			if _, err := c.Read(buf[:]); err != nil {
				return
			}
		}
	}()
}

// refusalWait bounds the time a refused connection is held.
const refusalWait = time.Second

// noteRefusal logs the first refusal of a burst, then a summary at most
// every refusalLogEvery; the metric has the exact count.
func (l *connLimiter) noteRefusal(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	first := len(l.refusedSince) == 0 && now.Sub(l.lastLog) >= refusalLogEvery
	l.refusedSince[why]++
	switch {
	case first:
		l.log.Warn("refusing new connections: a connection cap is reached", "cap", why,
			"max_connections", l.maxConns, "max_unauthenticated_per_client", l.maxUnauth)
		l.lastLog = now
		clear(l.refusedSince)
	case now.Sub(l.lastLog) >= refusalLogEvery:
		args := []any{"seconds", int(now.Sub(l.lastLog).Seconds()), "open", l.open}
		for k, n := range l.refusedSince {
			args = append(args, k, n)
		}
		l.log.Warn("connections refused at the caps", args...)
		l.lastLog = now
		clear(l.refusedSince)
	}
}

func cannedRefusal(status int, retry, code, msg string) []byte {
	body := `{"error":{"message":"` + msg + `","type":"server_error","param":null,"code":"` + code + `"}}` + "\n"
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + httpStatusText(status) + "\r\n" +
		"Content-Type: application/json\r\nRetry-After: " + retry + "\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

var (
	refusal503 = cannedRefusal(503, "1", "too_many_connections", "The server has too many open connections; try again shortly.")
	refusal429 = cannedRefusal(429, "1", "too_many_connections", "Too many unauthenticated connections from your address; send a key on the connections you have, or close some.")
)

func httpStatusText(code int) string {
	if code == 429 {
		return "Too Many Requests"
	}
	return "Service Unavailable"
}

// capListener applies the connection caps to a listener.
type capListener struct {
	net.Listener
	lim *connLimiter
}

// Accept returns the next connection within the caps; connections over a
// cap are refused here and never reach the HTTP server.
func (cl *capListener) Accept() (net.Conn, error) {
	for {
		c, err := cl.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := connAddr(c)
		exempt, why := cl.lim.admit(addr)
		if why != "" {
			cl.lim.refuse(c, why)
			continue
		}
		return &trackedConn{Conn: c, lim: cl.lim, addr: addr, exempt: exempt}, nil
	}
}

func connAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// trackedConn is a client connection counted by a connLimiter. Its fields
// other than Conn are guarded by the limiter's mutex.
type trackedConn struct {
	net.Conn
	lim    *connLimiter
	addr   netip.Addr
	exempt bool
	authed bool
	closed bool
	// linger: the connection closes with input unread (a refused body):
	// Close half-closes it and reads what the client still sends, briefly,
	// before closing, so the refusal is not lost to a reset.
	linger atomic.Bool
}

// Close closes the connection and forgets it (once).
func (c *trackedConn) Close() error {
	if c.linger.Swap(false) {
		c.lingerClose()
	}
	err := c.Conn.Close()
	c.lim.closed(c)
	return err
}

// Lingering close (RFC 9112 §9.6): a connection closed while the client is
// still sending makes the kernel answer its data with a reset, and a reset
// can destroy the answer the client has not read yet — a 413 or 401 would
// reach it as "connection reset by peer". So the write side is shut first
// (FIN after the answer), then input is read and dropped until the client
// closes, for at most lingerTime and lingerBytes: nginx's lingering_close,
// with a bound a hostile client cannot stretch.
const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

func (c *trackedConn) lingerClose() {
	if pendingInput(c.Conn) == 0 {
		// Nothing unread: a close sends a plain FIN. A client that
		// announced a body and sends nothing (the slow-loris of issue 9)
		// is not waited for.
		return
	}
	if c.CloseWrite() != nil {
		return
	}
	if c.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	for n := 0; n < lingerBytes; {
		k, err := c.Conn.Read(*bp)
		n += k
		if err != nil {
			return
		}
	}
}

// pendingInput returns the bytes received on c and not yet read (SIOCINQ);
// -1 when it cannot tell, which lingers.
func pendingInput(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	if raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	}) != nil {
		return -1
	}
	return n
}

// lingerOnClose marks the connection of ctx for a lingering close.
func lingerOnClose(ctx context.Context) {
	if tc, ok := ctx.Value(connCtxKey{}).(*trackedConn); ok {
		tc.linger.Store(true)
	}
}

type connCtxKey struct{}

// withConn is the server's ConnContext: it lets a request find its
// connection (under TLS, the tracked connection beneath it).
func withConn(ctx context.Context, c net.Conn) context.Context {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connCtxKey{}, tc)
	}
	return ctx
}

// markAuthenticated notes that a request on the connection of ctx presented
// a valid key.
func markAuthenticated(ctx context.Context) {
	if tc, ok := ctx.Value(connCtxKey{}).(*trackedConn); ok {
		tc.lim.authenticated(tc)
	}
}

// CloseWrite half-closes the connection when the underlying one can (TCP),
// as net/http does before closing a connection with unread input.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
