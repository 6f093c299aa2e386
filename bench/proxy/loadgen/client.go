package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// A minimal HTTP/1.1 client over one connection: the request is built once
// (requestBytes) and written as it is, the answer is parsed just enough to
// know where it ends (Content-Length, chunked, or end of connection). It
// costs a fraction of net/http's client CPU, which matters when the load
// generator shares two cores with the proxy it measures.

var (
	dataPrefix = []byte("data: ")
	doneMark   = []byte("[DONE]")
)

// requestBytes is one POST /v1/chat/completions with a bearer key.
func requestBytes(addr, key, model string, stream bool, maxTokens int) []byte {
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Say hello."}],"max_tokens":%d,"stream":%t}`,
		model, maxTokens, stream)
	var b bytes.Buffer
	b.WriteString("POST /v1/chat/completions HTTP/1.1\r\nHost: ")
	b.WriteString(addr)
	b.WriteString("\r\nAuthorization: Bearer ")
	b.WriteString(key)
	b.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\n\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// reply is what one round trip gave.
type reply struct {
	status int
	ttfb   time.Duration // request written → status line read
	total  time.Duration // request written → last byte of the body
	events int           // "data: " lines seen (when scanning)
	done   bool          // "[DONE]" seen (when scanning)
	body   []byte        // the body's first bytes (when keeping)
}

// conn is one client connection, re-dialled when the server closes it.
type conn struct {
	addr    string
	nc      net.Conn
	br      *bufio.Reader
	timeout time.Duration // per round trip; 0: none
	keep    int           // keep up to this many body bytes in reply.body
	scratch []byte
}

func newConn(addr string, timeout time.Duration) *conn {
	return &conn{addr: addr, timeout: timeout}
}

func (c *conn) dial() error {
	nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err != nil {
		return err
	}
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 32<<10)
	} else {
		c.br.Reset(nc)
	}
	c.nc = nc
	return nil
}

func (c *conn) close() {
	if c.nc != nil {
		_ = c.nc.Close()
		c.nc = nil
	}
}

// roundTrip sends req and reads the whole answer. scan counts SSE events and
// looks for [DONE]. A reused connection that the server had already closed
// (nothing read back) is retried once on a new one.
func (c *conn) roundTrip(req []byte, scan bool) (reply, error) {
	for attempt := 0; ; attempt++ {
		fresh := c.nc == nil
		if fresh {
			if err := c.dial(); err != nil {
				return reply{}, err
			}
		}
		r, got, err := c.try(req, scan)
		if err == nil {
			return r, nil
		}
		c.close()
		if fresh || got || attempt > 0 {
			return r, err
		}
	}
}

func (c *conn) try(req []byte, scan bool) (r reply, got bool, err error) {
	start := time.Now()
	if c.timeout > 0 {
		_ = c.nc.SetDeadline(start.Add(c.timeout))
	}
	if _, err = c.nc.Write(req); err != nil {
		return r, false, err
	}
	closeConn, chunked, length, err := c.readHead(&r)
	if r.status != 0 {
		got = true
		r.ttfb = time.Since(start)
	}
	if err != nil {
		return r, got, err
	}
	switch {
	case r.status == 204 || r.status == 304 || r.status < 200:
	case chunked:
		err = c.readChunked(&r, scan)
	case length >= 0:
		err = c.readN(&r, length, scan)
	default:
		err = c.readToEOF(&r, scan)
		closeConn = true
	}
	if err != nil {
		return r, got, err
	}
	r.total = time.Since(start)
	if closeConn {
		c.close()
	}
	return r, got, nil
}

// readHead reads the status line and the headers.
func (c *conn) readHead(r *reply) (closeConn, chunked bool, length int64, err error) {
	length = -1
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return false, false, 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return false, false, 0, fmt.Errorf("bad status line %q", line)
	}
	st, ok := atoiBytes(line[9:12])
	if !ok {
		return false, false, 0, fmt.Errorf("bad status line %q", line)
	}
	r.status = int(st)
	closeConn = line[7] == '0' // HTTP/1.0 closes unless told otherwise
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return false, false, 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			return closeConn, chunked, length, nil
		}
		i := bytes.IndexByte(h, ':')
		if i < 0 {
			continue
		}
		name, val := h[:i], bytes.TrimSpace(h[i+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := atoiBytes(val)
			if !ok {
				return false, false, 0, fmt.Errorf("bad Content-Length %q", val)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = containsFold(val, "chunked")
		case bytes.EqualFold(name, []byte("Connection")):
			if containsFold(val, "close") {
				closeConn = true
			} else if containsFold(val, "keep-alive") {
				closeConn = false
			}
		}
	}
}

func (r *reply) see(p []byte, scan bool, keep int) {
	if scan {
		r.events += bytes.Count(p, dataPrefix)
		if bytes.Contains(p, doneMark) {
			r.done = true
		}
	}
	if room := keep - len(r.body); room > 0 {
		r.body = append(r.body, p[:min(room, len(p))]...)
	}
}

// readN reads n body bytes.
func (c *conn) readN(r *reply, n int64, scan bool) error {
	if !scan && c.keep == 0 {
		_, err := c.br.Discard(int(n))
		return err
	}
	for n > 0 {
		k := int(min(n, int64(c.br.Size())))
		p, err := c.br.Peek(k)
		if err != nil {
			return err
		}
		r.see(p, scan, c.keep)
		_, _ = c.br.Discard(k)
		n -= int64(k)
	}
	return nil
}

func (c *conn) readChunked(r *reply, scan bool) error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, ok := hexSize(line)
		if !ok {
			return fmt.Errorf("bad chunk size line %q", line)
		}
		if size == 0 {
			for { // trailers, then the empty line
				l, err := c.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(l, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if err := c.readN(r, size, scan); err != nil {
			return err
		}
		crlf, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return errors.New("chunk not followed by CRLF")
		}
	}
}

func (c *conn) readToEOF(r *reply, scan bool) error {
	if c.scratch == nil {
		c.scratch = make([]byte, 32<<10)
	}
	for {
		n, err := c.br.Read(c.scratch)
		r.see(c.scratch[:n], scan, c.keep)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func atoiBytes(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int64(ch-'0')
	}
	return n, true
}

// hexSize parses a chunk-size line ("1a2;ext\r\n").
func hexSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for _, ch := range line {
		var d byte
		switch {
		case ch >= '0' && ch <= '9':
			d = ch - '0'
		case ch >= 'a' && ch <= 'f':
			d = ch - 'a' + 10
		case ch >= 'A' && ch <= 'F':
			d = ch - 'A' + 10
		case ch == ';' || ch == '\r' || ch == '\n' || ch == ' ' || ch == '\t':
			return n, digits > 0
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, digits > 0
}

func containsFold(b []byte, s string) bool {
	return bytes.Contains(bytes.ToLower(b), []byte(s))
}
