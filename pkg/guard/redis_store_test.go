package guard

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func (s *RedisStore) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// TestRedisStoreOutage: Redis killed under load. Decisions fail with
// ErrStoreUnavailable (and at once, not after a timeout each), settlements
// are queued, and within a second of Redis's return (same port, empty) the
// store decides again and the queue is applied.
func TestRedisStoreOutage(t *testing.T) {
	srv := startRedis(t)
	s := newTestRedisStore(t, srv, RedisOptions{})
	ctx := context.Background()
	a := Ask{Key: "k", Limit: Limit{RPM: 1_000_000, TPM: 1 << 40, Concurrency: 1000}, Global: GlobalLimit{Concurrency: 1000}, Tokens: 10}
	held := suiteAdmit(t, s, a) // finished while Redis is down

	var ok, down atomic.Int64
	var otherMu sync.Mutex
	var other []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := s.Admit(ctx, a)
				switch {
				case err == nil:
					ok.Add(1)
					err = s.Finish(ctx, d.Ticket, 5)
				case errors.Is(err, ErrStoreUnavailable):
					down.Add(1)
					err = nil
					time.Sleep(time.Millisecond) // pace the load while refused at once
				}
				if err != nil {
					otherMu.Lock()
					other = append(other, err)
					otherMu.Unlock()
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	waitFor(t, 10*time.Second, "100 admissions", func() bool { return ok.Load() >= 100 })
	srv.kill()
	killed := time.Now()
	// A second down at least: reconnection attempts have backed off fully.
	waitFor(t, 10*time.Second, "refusals while Redis is down", func() bool {
		return down.Load() >= 20 && time.Since(killed) > time.Second
	})
	if s.Up() || testutil.ToFloat64(s.m.up) != 0 {
		t.Fatal("store still reported up")
	}
	start := time.Now()
	_, err := s.Admit(ctx, a)
	if !errors.Is(err, ErrStoreUnavailable) || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("while down: %v after %v, want ErrStoreUnavailable at once", err, time.Since(start))
	}
	if err := s.Finish(ctx, held.Ticket, 3); err != nil {
		t.Fatalf("a settlement while Redis is down must be queued, got %v", err)
	}
	if n := s.pendingLen(); n == 0 {
		t.Fatal("no settlement queued")
	}

	srv.restart()
	back := time.Now()
	before := ok.Load()
	waitFor(t, 5*time.Second, "admissions after Redis returned", func() bool { return ok.Load() > before })
	took := time.Since(back)
	t.Logf("deciding again %v after Redis answered PING", took)
	if took > time.Second {
		t.Fatalf("the store took %v to use Redis again, want under a second", took)
	}
	waitFor(t, 5*time.Second, "queued settlements applied", func() bool { return s.pendingLen() == 0 })
	if !s.Up() || testutil.ToFloat64(s.m.up) != 1 || testutil.ToFloat64(s.m.pending) != 0 {
		t.Fatal("store not reported up again")
	}
	if testutil.ToFloat64(s.m.dropped) != 0 {
		t.Fatalf("%v settlements dropped", testutil.ToFloat64(s.m.dropped))
	}
	otherMu.Lock()
	defer otherMu.Unlock()
	if len(other) > 0 {
		t.Fatalf("%d errors other than ErrStoreUnavailable, first: %v", len(other), other[0])
	}
}

// TestRedisStoreSettlementRetried: a Finish that cannot reach Redis (stopped
// with SIGSTOP: its data survives) is queued, applied once Redis answers
// again, and applied once only, even though Redis also runs the stalled
// first attempt when it resumes.
func TestRedisStoreSettlementRetried(t *testing.T) {
	srv := startRedis(t)
	c := newSuiteClock()
	s := newTestRedisStore(t, srv, RedisOptions{now: c.now})
	ctx := context.Background()
	a := Ask{Key: "k", Limit: Limit{TPM: 1000, Concurrency: 1}, Tokens: 600}
	d := suiteAdmit(t, s, a)

	srv.signal(syscall.SIGSTOP)
	if err := s.Finish(ctx, d.Ticket, 100); err != nil {
		t.Fatalf("Finish while Redis is stopped: %v, want it queued", err)
	}
	if s.pendingLen() != 1 {
		t.Fatalf("%d settlements queued, want 1", s.pendingLen())
	}
	if _, err := s.Admit(ctx, a); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Admit while Redis is stopped: %v", err)
	}
	srv.signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, "the queued settlement applied", func() bool { return s.pendingLen() == 0 })

	// Slot released, 500 tokens refunded once: 1000 - 600 + 500 - 600.
	d2 := suiteAdmit(t, s, a)
	if !d2.Allowed || d2.Status.RemainingTokens != 300 {
		t.Fatalf("after the retried settlement: %+v (remaining 300 if refunded once, 400 if twice)", d2)
	}
	t.Logf("settlements skipped (their first attempt ran after all): %v", testutil.ToFloat64(s.m.skipped))
}

// TestHelperRedisHolder is not a test: re-executed by
// TestRedisStoreLeasesOfADeadGuard, it is a guard that takes two key
// concurrency slots and two global ones, says "held", and waits to be
// killed, renewing its leases meanwhile.
func TestHelperRedisHolder(t *testing.T) {
	url := os.Getenv("GLMCTL_REDIS_HOLDER")
	if url == "" {
		t.Skip("helper process for TestRedisStoreLeasesOfADeadGuard")
	}
	lease, _ := time.ParseDuration(os.Getenv("GLMCTL_REDIS_HOLDER_LEASE"))
	s, err := NewRedisStore(RedisOptions{URL: url, Prefix: os.Getenv("GLMCTL_REDIS_HOLDER_PREFIX"), LeaseTime: lease})
	if err != nil {
		fmt.Println("ERR", err)
		return
	}
	for i := 0; i < 2; i++ {
		d, err := s.Admit(context.Background(), holderAsk)
		if err != nil || !d.Allowed {
			fmt.Println("ERR", d, err)
			return
		}
	}
	fmt.Println("held")
	select {}
}

var holderAsk = Ask{Key: "k", Limit: Limit{Concurrency: 2}, Global: GlobalLimit{Concurrency: 3}}

// TestRedisStoreLeasesOfADeadGuard: a guard process holding concurrency
// slots keeps them past the lease time (it renews them), and once it is
// killed they come back within the lease time.
func TestRedisStoreLeasesOfADeadGuard(t *testing.T) {
	srv := startRedis(t)
	const lease = 1500 * time.Millisecond
	prefix := testPrefix(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRedisHolder$")
	cmd.Env = append(os.Environ(), "GLMCTL_REDIS_HOLDER="+srv.url(), "GLMCTL_REDIS_HOLDER_LEASE="+lease.String(), "GLMCTL_REDIS_HOLDER_PREFIX="+prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); l == "held" || strings.HasPrefix(l, "ERR") {
				line <- l
			}
		}
		close(line)
	}()
	select {
	case l := <-line:
		if l != "held" {
			t.Fatalf("holder: %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("holder did not take its slots")
	}

	s := newTestRedisStore(t, srv, RedisOptions{Prefix: prefix, LeaseTime: lease})
	ctx := context.Background()
	keyFull := func() bool {
		d, err := s.Admit(ctx, holderAsk)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			_ = s.Cancel(ctx, d.Ticket)
		}
		return !d.Allowed && d.Reason == ReasonConcurrency
	}
	// Held over two lease times: the live holder renews.
	for until := time.Now().Add(2 * lease); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
		if !keyFull() {
			t.Fatal("the slots of a live guard came back: its leases were not renewed")
		}
	}
	// Global: 2 of 3 taken by the holder.
	g := Ask{Key: "other", Global: GlobalLimit{Concurrency: 3}}
	if d := suiteAdmit(t, s, g); !d.Allowed {
		t.Fatalf("global: %+v", d)
	}
	if d := suiteAdmit(t, s, g); d.Allowed {
		t.Fatal("global: the holder's 2 slots are not counted")
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	waitFor(t, lease+5*time.Second, "the dead guard's key slots", func() bool { return !keyFull() })
	took := time.Since(killed)
	t.Logf("slots back %v after the kill (lease %v)", took, lease)
	if took > lease+time.Second {
		t.Fatalf("slots came back %v after the kill, lease is %v", took, lease)
	}
	if d := suiteAdmit(t, s, g); !d.Allowed {
		t.Fatalf("global slots of the dead guard not back: %+v", d)
	}
}

// TestRedisStoreLeaseRenewal on a fake clock: a lease renewed before it
// ends holds the slot; a store closed with slots held (as if killed) loses
// them one lease time after its last renewal.
// Renewal runs pipelined, one script per lease set, on Cluster too, and
// survives a flushed script cache (a restarted Redis).
func TestRedisStoreLeaseRenewal(t *testing.T) {
	for _, mode := range []string{"server", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var srv *redisServer
			if mode == "cluster" {
				srv = startRedisCluster(t)
			} else {
				srv = startRedis(t)
			}
			c := newSuiteClock()
			const lease = 30 * time.Second
			holder := newTestRedisStore(t, srv, RedisOptions{now: c.now, LeaseTime: lease})
			other := newTestRedisStore(t, srv, RedisOptions{now: c.now, LeaseTime: lease, Prefix: holder.prefix})
			ctx := context.Background()
			a := Ask{Key: "k", Limit: Limit{Concurrency: 1}, Global: GlobalLimit{Concurrency: 2}}
			g := Ask{Key: "g", Global: GlobalLimit{Concurrency: 2}}
			suiteAdmit(t, holder, a)
			suiteAdmit(t, holder, g)
			rc := srv.client()
			defer rc.Close()
			if err := rc.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			c.add(lease * 9 / 10)
			holder.renew(ctx)
			c.add(lease * 9 / 10)
			if d := suiteAdmit(t, other, a); d.Allowed {
				t.Fatal("a renewed lease ran out")
			}
			if d := suiteAdmit(t, other, g); d.Allowed {
				t.Fatal("a renewed global lease ran out")
			}
			if err := holder.Close(ctx); err != nil {
				t.Fatal(err)
			}
			c.add(lease / 20) // 1.85 lease times in, 0.95 after the renewal
			if d := suiteAdmit(t, other, g); d.Allowed {
				t.Fatal("the lease ran out before its time")
			}
			c.add(lease / 10)
			if d := suiteAdmit(t, other, a); !d.Allowed {
				t.Fatalf("the leases of a closed store did not run out: %+v", d)
			}
			if d := suiteAdmit(t, other, g); !d.Allowed {
				t.Fatalf("the global lease of a closed store did not run out: %+v", d)
			}
		})
	}
}

// TestRedisKeysOfOneAPIKeyShareASlot: every Redis key the store writes for
// one API key hashes to one Cluster slot (checked with Redis's own CLUSTER
// KEYSLOT too), whatever the key's name.
func TestRedisKeysOfOneAPIKeyShareASlot(t *testing.T) {
	srv := startRedisCluster(t)
	s := newTestRedisStore(t, srv, RedisOptions{})
	ctx := context.Background()
	rc := srv.client()
	defer rc.Close()
	names := []string{"alice", "a}b", "{x}", "", "ключ", "a:b", "}{", "global"}
	for _, name := range names {
		a := Ask{Key: name, Limit: Limit{RPM: 10, TPM: 1000, Concurrency: 5}, Global: GlobalLimit{RPM: 100, Concurrency: 10}, Tokens: 10}
		d := suiteAdmit(t, s, a)
		if !d.Allowed {
			t.Fatalf("%q: %+v", name, d)
		}
		if err := s.Finish(ctx, d.Ticket, 5); err != nil {
			t.Fatal(err)
		}
		d = suiteAdmit(t, s, a) // leave one in flight: its lease set exists
		if !d.Allowed {
			t.Fatalf("%q: %+v", name, d)
		}
		st, ls := s.keys(name)
		want, _ := rc.ClusterKeySlot(ctx, st).Result()
		for _, k := range []string{st, ls} {
			got := keySlot(k)
			if redisGot, _ := rc.ClusterKeySlot(ctx, k).Result(); int64(got) != redisGot {
				t.Fatalf("crc16 slot of %q: %d, Redis says %d", k, got, redisGot)
			}
			if int64(got) != want {
				t.Errorf("API key %q: %q in slot %d, %q in %d", name, st, want, k, got)
			}
		}
	}
	// And those are all the keys there are, besides the global ones.
	all, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, name := range names {
		st, ls := s.keys(name)
		known[st], known[ls] = true, true
	}
	gs, gl := s.globalKeys()
	known[gs], known[gl] = true, true
	if keySlot(gs) != keySlot(gl) {
		t.Errorf("global keys in slots %d and %d", keySlot(gs), keySlot(gl))
	}
	for _, k := range all {
		if !known[k] {
			t.Errorf("unexpected key %q", k)
		}
	}
	if len(all) != len(known) {
		t.Errorf("%d keys, want %d: %q", len(all), len(known), all)
	}
}

// TestRedisStateExpires: every key the store writes has a time to live, no
// longer than it takes the state to become equal to a fresh one (plus the
// lease while a request is in flight).
func TestRedisStateExpires(t *testing.T) {
	srv := startRedis(t)
	s := newTestRedisStore(t, srv, RedisOptions{LeaseTime: 5 * time.Second})
	ctx := context.Background()
	d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{RPM: 60, TPM: 6000, Concurrency: 2}, Global: GlobalLimit{RPM: 600}, Tokens: 100})
	if err := s.Finish(ctx, d.Ticket, 100); err != nil {
		t.Fatal(err)
	}
	rc := srv.client()
	defer rc.Close()
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys written")
	}
	for _, k := range keys {
		ttl, err := rc.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Longest here: the lease (5 s) and its second of margin.
		if ttl <= 0 || ttl > 6*time.Second {
			t.Errorf("%s: ttl %v", k, ttl)
		}
	}
}

func TestParseRedisURL(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url, pwFile string
		cluster     bool
		display     string
		err         string
	}{
		{url: "redis://127.0.0.1:6379/0", display: "redis://127.0.0.1:6379/0"},
		{url: "redis://user:pw@10.0.0.1:6379/2?read_timeout=2s", display: "redis://user:xxxxx@10.0.0.1:6379/2?read_timeout=2s"},
		{url: "rediss://redis.example:6380", display: "rediss://redis.example:6380"},
		{url: "unix:///run/redis.sock", display: "unix:///run/redis.sock"},
		{url: "redis://a:6379?addr=b:6379&addr=c:6379", cluster: true, display: "redis://a:6379?addr=b:6379&addr=c:6379"},
		{url: "redis://a:6379?cluster=true", cluster: true, display: "redis://a:6379?cluster=true"},
		{url: "redis://s1:26379?master_name=m&addr=s2:26379&password=pw", display: "redis://s1:26379?addr=s2%3A26379&master_name=m&password=xxxxx"},
		{url: "redis://h:6379/0", pwFile: pwFile, display: "redis://h:6379/0"},
		{url: "redis://:pw@h:6379/0", pwFile: pwFile, err: "give one of them"},
		{url: "redis://h:6379/0", pwFile: filepath.Join(dir, "missing"), err: "password file"},
		{url: "redis://h:6379?cluster=maybe", err: "cluster="},
		{url: "redis://h:6379?master_name=m&cluster=true", err: "exclude each other"},
		{url: "redis://h:6379?bogus=1", err: "bogus"},
		{url: "http://h:6379", err: "scheme"},
		{url: "redis://u:pw@h:6379/x", err: "invalid database"},
		{url: ":not a url", err: "not a URL"},
	} {
		tg, err := parseRedisTarget(RedisOptions{URL: tc.url, PasswordFile: tc.pwFile})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.url, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), ":pw@") {
				t.Errorf("%s: the error shows the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if tg.cluster != tc.cluster || tg.display != tc.display {
			t.Errorf("%s: cluster %v display %q, want %v %q", tc.url, tg.cluster, tg.display, tc.cluster, tc.display)
		}
	}
}

// TestRedisStorePasswordFile: the password comes from the file (read again
// for new connections); a wrong one is a configuration error, not
// "unavailable".
func TestRedisStorePasswordFile(t *testing.T) {
	srv := startRedis(t, "--requirepass", "s3cret")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestRedisStore(t, srv, RedisOptions{PasswordFile: pw})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{RPM: 1}}); !d.Allowed {
		t.Fatal(d)
	}
	if err := os.WriteFile(pw, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := newTestRedisStore(t, srv, RedisOptions{PasswordFile: pw})
	err := bad.Ping(ctx)
	if err == nil || errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("wrong password: %v, want an error that is not ErrStoreUnavailable", err)
	}
	none := newTestRedisStore(t, srv, RedisOptions{})
	if err := none.Ping(ctx); err == nil || errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("no password: %v", err)
	}
}

// TestRedisStoreSentinel: the master found through Sentinel.
func TestRedisStoreSentinel(t *testing.T) {
	master := startRedis(t)
	sentinel := startRedisSentinel(t, master)
	s := newTestRedisStore(t, master, RedisOptions{URL: "redis://" + sentinel.addr() + "?master_name=mymaster"})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := Ask{Key: "k", Limit: Limit{RPM: 1, Concurrency: 1}}
	if d := suiteAdmit(t, s, a); !d.Allowed {
		t.Fatal(d)
	}
	if d := suiteAdmit(t, s, a); d.Allowed || d.Reason != ReasonRPM {
		t.Fatalf("second: %+v", d)
	}
	st, ls := s.keys("k")
	rc := master.client()
	defer rc.Close()
	n, err := rc.Exists(context.Background(), st, ls).Result()
	if err != nil || n != 2 {
		t.Fatalf("the master holds %d of the key's 2 Redis keys (%v)", n, err)
	}
}

// TestRedisStoreTLS: rediss:// with the server's CA given as a file; a
// certificate that does not verify is a configuration error, not
// "unavailable".
func TestRedisStoreTLS(t *testing.T) {
	srv, url, ca, _, _ := startTLSRedis(t, "no")
	ctx := context.Background()
	s := newTestRedisStore(t, srv, RedisOptions{URL: url, CAFile: ca})
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{RPM: 1}}); !d.Allowed {
		t.Fatal(d)
	}
	untrusted := newTestRedisStore(t, srv, RedisOptions{URL: url})
	if err := untrusted.Ping(ctx); err == nil || errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("server certificate from an unknown CA: %v, want an error that is not ErrStoreUnavailable", err)
	}
	if _, err := NewRedisStore(RedisOptions{URL: "redis://127.0.0.1:1/0", CAFile: ca}); err == nil || !strings.Contains(err.Error(), "rediss://") {
		t.Fatalf("a CA file without TLS: %v", err)
	}
}

// TestRedisStoreTLSClientCert: a rediss:// server that asks for client
// certificates (tls-auth-clients yes) admits a store with a certificate its
// CA signed and refuses one without; a half-given pair, a pair on redis://
// and a key that does not load are errors before anything connects.
func TestRedisStoreTLSClientCert(t *testing.T) {
	srv, url, ca, cert, key := startTLSRedis(t, "yes")
	ctx := context.Background()
	s := newTestRedisStore(t, srv, RedisOptions{URL: url, CAFile: ca, CertFile: cert, KeyFile: key})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if d := suiteAdmit(t, s, Ask{Key: "k", Limit: Limit{RPM: 1}}); !d.Allowed {
		t.Fatal(d)
	}
	anon := newTestRedisStore(t, srv, RedisOptions{URL: url, CAFile: ca})
	if err := anon.Ping(ctx); err == nil {
		t.Fatal("a server that asks for a client certificate admitted a store without one")
	} else {
		t.Logf("without: %v", err)
	}
	for _, tc := range []struct {
		opts RedisOptions
		want string
	}{
		{RedisOptions{URL: url, CertFile: cert}, "needs both"},
		{RedisOptions{URL: url, KeyFile: key}, "needs both"},
		{RedisOptions{URL: strings.Replace(url, "rediss://", "redis://", 1), CertFile: cert, KeyFile: key}, "rediss://"},
		{RedisOptions{URL: url, CertFile: cert, KeyFile: ca}, "client certificate"},
	} {
		if err := ValidateRedisOptions(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
}

// startTLSRedis starts a redis-server on a TLS port only, its certificate
// signed by a test CA, asking clients for certificates or not
// (tls-auth-clients yes|no); it returns the server, its rediss:// URL and
// the CA, certificate and key files (the certificate serves as a client's
// too).
func startTLSRedis(t *testing.T, authClients string) (srv *redisServer, url, ca, cert, key string) {
	t.Helper()
	ca, cert, key = writeTestCerts(t, t.TempDir())
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	srv = startRedis(t, "--tls-port", strconv.Itoa(port), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", ca, "--tls-auth-clients", authClients)
	return srv, fmt.Sprintf("rediss://127.0.0.1:%d/0", port), ca, cert, key
}

// writeTestCerts writes a CA and a server certificate for 127.0.0.1 signed
// by it; it returns the files' paths.
func writeTestCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "glmctl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		// Server and client: TestRedisStoreTLSClientCert presents it back.
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "PRIVATE KEY", keyDER)
}

// TestRedisStorePingUnreachable: glmctl check's question, answered.
func TestRedisStorePingUnreachable(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewRedisStore(RedisOptions{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Ping(context.Background()); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("ping of nothing: %v", err)
	}
	reg := prometheus.NewRegistry()
	for _, c := range s.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "glmctl_guard_limits_store_up", "glmctl_guard_limits_store_errors_total"); err != nil || n != 2 {
		t.Fatalf("metrics: %d series, %v", n, err)
	}
}
