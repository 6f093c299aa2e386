package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
)

// Client talks to a daemon's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path. Nothing is dialled yet.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// RemoteError is an error the daemon reported.
type RemoteError struct {
	Status  int
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, body, reply any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://glmctl"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.dialErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return &RemoteError{Status: resp.StatusCode, Message: e.Error}
	}
	if reply == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(reply)
}

func (c *Client) dialErr(err error) error {
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w: %s: permission denied (the control socket is mode 0600: run this as the user that runs `glmctl up`, usually root)", ErrUnreachable, c.path)
	}
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: %s: %v (is `glmctl up` running with this config?)", ErrUnreachable, c.path, err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, c.path, err)
	}
	return err
}

// Status fetches the daemon's status for the named programs (all when none).
func (c *Client) Status(ctx context.Context, names ...string) (*StatusReply, error) {
	q := url.Values{}
	for _, n := range names {
		q.Add("name", n)
	}
	var st StatusReply
	if err := c.do(ctx, http.MethodGet, "/v1/status?"+q.Encode(), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Action runs start, stop or restart on the named programs.
func (c *Client) Action(ctx context.Context, action string, wait bool, names ...string) error {
	return c.do(ctx, http.MethodPost, "/v1/programs/"+action, ProgramsRequest{Names: names, Wait: wait}, nil)
}

// Reload asks the daemon to re-read its configuration.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/reload", struct{}{}, nil)
}

// AuditReopen asks the daemon to reopen its audit log.
func (c *Client) AuditReopen(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/audit/reopen", struct{}{}, nil)
}

// Logs writes the last n lines of a program's output to w, then, with
// follow, new lines until ctx is done.
func (c *Client) Logs(ctx context.Context, w io.Writer, name string, n int, follow bool) error {
	q := url.Values{"name": {name}, "n": {strconv.Itoa(n)}}
	if follow {
		q.Set("follow", "1")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://glmctl/v1/logs?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.dialErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return &RemoteError{Status: resp.StatusCode, Message: e.Error}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if _, err := fmt.Fprintln(w, sc.Text()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
