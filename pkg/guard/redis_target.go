package guard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/glmctl/glmctl/internal/config"
)

// redisTarget is a parsed limits_store URL: how to make a client for it.
type redisTarget struct {
	newClient func() redis.UniversalClient
	cluster   bool
	display   string // the URL without its password
}

// ValidateRedisOptions checks the URL, password file, CA file and client
// certificate of opts the way NewRedisStore does, without connecting.
func ValidateRedisOptions(opts RedisOptions) error {
	_, err := parseRedisTarget(opts)
	return err
}

// parseRedisTarget reads a limits_store URL, as go-redis does, in one of
// three forms:
//
//	redis://[user:pass@]host:6379/0        one server (rediss:// TLS, unix:///path.sock)
//	redis://[user:pass@]host:6379?cluster=true&addr=host2:6379   Cluster, seed addresses
//	redis://sentinel:26379?master_name=mymaster&addr=…&password=…   Sentinel (the URL's own
//	                                         user:pass are the sentinels'; password= the master's)
//
// Every other go-redis query option (dial_timeout, read_timeout,
// pool_size, …) is accepted. Unset timeouts default to 1 s and dials are
// not retried: a decision waits for Redis at most about a second.
func parseRedisTarget(opts RedisOptions) (*redisTarget, error) {
	raw, passwordFile, caFile := opts.URL, opts.PasswordFile, opts.CAFile
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("limits_store: not a URL (want redis://[user:pass@]host:6379/0)")
	}
	t := &redisTarget{display: redactRedisURL(u)}
	bad := func(err error) (*redisTarget, error) {
		return nil, fmt.Errorf("limits_store %s: %w", t.display, err)
	}
	q := u.Query()
	if v := q.Get("cluster"); v != "" {
		if t.cluster, err = strconv.ParseBool(v); err != nil {
			return bad(fmt.Errorf("cluster=%q: want true or false", v))
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
	}
	var creds func(ctx context.Context) (string, string, error)
	if passwordFile != "" {
		if _, err := readPasswordFile(passwordFile); err != nil {
			return bad(config.Setting("guard.limits_store_password_file", err))
		}
	}
	var roots *x509.CertPool
	if caFile != "" {
		if u.Scheme != "rediss" {
			return bad(config.Setting("guard.limits_store_ca_file", errors.New("a CA file is for TLS: write rediss://")))
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return bad(config.Setting("guard.limits_store_ca_file", fmt.Errorf("CA file: %w", err)))
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return bad(config.Setting("guard.limits_store_ca_file", fmt.Errorf("CA file %s: no PEM certificate in it", caFile)))
		}
	}
	clientCert, err := redisClientCert(u.Scheme, opts.CertFile, opts.KeyFile)
	if err != nil {
		return bad(err)
	}
	withCA := func(c *tls.Config) {
		if c != nil && roots != nil {
			c.RootCAs = roots
		}
		if c != nil && clientCert != nil {
			c.GetClientCertificate = clientCert
		}
	}
	withFile := func(user string, urlPassword bool) error {
		if passwordFile == "" {
			return nil
		}
		if urlPassword {
			return errors.New("the URL carries a password and a password file is set: give one of them")
		}
		creds = func(context.Context) (string, string, error) {
			p, err := readPasswordFile(passwordFile)
			return user, p, err
		}
		return nil
	}
	switch {
	case q.Has("master_name"):
		if t.cluster {
			return bad(errors.New("master_name (Sentinel) and cluster=true exclude each other"))
		}
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return bad(err)
		}
		if err := withFile(o.Username, o.Password != ""); err != nil {
			return bad(err)
		}
		o.CredentialsProviderContext = creds
		withCA(o.TLSConfig)
		redisDefaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.DialerRetries, &o.MaxRetries, &o.ContextTimeoutEnabled)
		t.newClient = func() redis.UniversalClient { c := *o; return redis.NewFailoverClient(&c) }
	case t.cluster || q.Has("addr"):
		t.cluster = true
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return bad(err)
		}
		if err := withFile(o.Username, o.Password != ""); err != nil {
			return bad(err)
		}
		o.CredentialsProviderContext = creds
		withCA(o.TLSConfig)
		redisDefaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.DialerRetries, &o.MaxRetries, &o.ContextTimeoutEnabled)
		t.newClient = func() redis.UniversalClient { c := *o; return redis.NewClusterClient(&c) }
	default:
		o, err := redis.ParseURL(u.String())
		if err != nil {
			return bad(err)
		}
		if err := withFile(o.Username, o.Password != ""); err != nil {
			return bad(err)
		}
		o.CredentialsProviderContext = creds
		withCA(o.TLSConfig)
		redisDefaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.DialerRetries, &o.MaxRetries, &o.ContextTimeoutEnabled)
		t.newClient = func() redis.UniversalClient { c := *o; return redis.NewClient(&c) }
	}
	return t, nil
}

// redisDefaults fits go-redis's defaults (5 s dial, 3 s read, 5 dial
// attempts, 3 retries) to a request path: a Redis that does not answer
// within about a second is unavailable, and the guard says so at once.
// Settings given in the URL stay.
func redisDefaults(dial, read, write *time.Duration, dialerRetries, maxRetries *int, ctxTimeout *bool) {
	if *dial == 0 {
		*dial = time.Second
	}
	if *read == 0 {
		*read = time.Second
	}
	if *write == 0 {
		*write = time.Second
	}
	if *dialerRetries == 0 {
		*dialerRetries = 1
	}
	if *maxRetries == 0 {
		// One retry on a fresh connection (a stale pooled one after a Redis
		// restart); safe: a repeated admission only takes more, a repeated
		// settlement finds its lease gone.
		*maxRetries = 1
	}
	*ctxTimeout = true
}

func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	p, _, _ := strings.Cut(string(b), "\n")
	p = strings.TrimSuffix(p, "\r")
	if p == "" {
		return "", fmt.Errorf("password file %s: empty first line", path)
	}
	return p, nil
}

// redactRedisURL writes u without its passwords (user info and the
// Sentinel form's password= option).
func redactRedisURL(u *url.URL) string {
	c := *u
	q := c.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}

// redisClientCert checks a client certificate and key pair (both or
// neither; rediss:// only) and returns what presents it at each TLS
// handshake. The files are read again at every new connection, so a
// renewed certificate is used without a restart; a pair that no longer
// loads fails that connection (the store is then unavailable, and the
// error says why) while open connections go on.
func redisClientCert(scheme, certFile, keyFile string) (func(*tls.CertificateRequestInfo) (*tls.Certificate, error), error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, config.Setting("guard.limits_store_cert_file", errors.New("a client certificate needs both limits_store_cert_file and limits_store_key_file"))
	}
	if scheme != "rediss" {
		return nil, config.Setting("guard.limits_store_cert_file", errors.New("a client certificate is for TLS: write rediss://"))
	}
	load := func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s: %w", certFile, keyFile, err)
		}
		return &c, nil
	}
	if _, err := load(); err != nil {
		return nil, config.Setting("guard.limits_store_key_file", err)
	}
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return load() }, nil
}
