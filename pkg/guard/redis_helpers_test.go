package guard

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of a test's own, on a free loopback port,
// without persistence, stopped by PID when the test ends. Never the
// system's service.
type redisServer struct {
	t       testing.TB
	bin     string
	dir     string
	port    int
	cluster bool
	master  *redisServer // set: a Sentinel watching master as "mymaster"
	extra   []string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// redisServerBin finds redis-server or skips.
func redisServerBin(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if b, err := exec.LookPath(p); err == nil {
			return b
		}
	}
	t.Skip("redis-server is not installed (apt-get install -y redis-server; .ci/run installs it)")
	return ""
}

// startRedis starts a redis-server with extra arguments (e.g.
// "--requirepass", "x") and waits until it answers PING.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	r := &redisServer{t: t, bin: redisServerBin(t), dir: t.TempDir(), extra: extra}
	t.Cleanup(r.stop)
	var err error
	for try := 0; try < 5; try++ { // a free port may be taken before redis binds it
		if r.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = r.start(); err == nil {
			return r
		}
	}
	t.Fatal(err)
	return nil
}

// startRedisCluster starts a one-node Redis Cluster owning every slot: the
// CROSSSLOT rules apply as on a real cluster.
func startRedisCluster(t testing.TB) *redisServer {
	t.Helper()
	r := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	r.cluster = true
	c := r.client()
	defer c.Close()
	ctx := context.Background()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "cluster_state:ok", func() bool {
		info, _ := c.ClusterInfo(ctx).Result()
		return strings.Contains(info, "cluster_state:ok")
	})
	return r
}

// startRedisSentinel starts a Sentinel watching master as "mymaster".
func startRedisSentinel(t testing.TB, master *redisServer) *redisServer {
	t.Helper()
	r := &redisServer{t: t, bin: redisServerBin(t), dir: t.TempDir(), master: master}
	t.Cleanup(r.stop)
	var err error
	for try := 0; try < 5; try++ {
		if r.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = r.start(); err == nil {
			return r
		}
	}
	t.Fatal(err)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *redisServer) start() error {
	args := append([]string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir,
		"--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log"),
	}, r.extra...)
	if r.master != nil {
		// Sentinel rewrites its config file: one of its own.
		conf := filepath.Join(r.dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte("sentinel monitor mymaster 127.0.0.1 "+strconv.Itoa(r.master.port)+" 1\n"), 0o600); err != nil {
			return err
		}
		args = []string{conf, "--sentinel", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
			"--dir", r.dir, "--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log")}
	}
	cmd := exec.Command(r.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(r.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-r.exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return fmt.Errorf("redis-server on port %d exited: %s", r.port, lastLines(string(log), 5))
		default:
		}
		if pingRaw(r.addr()) {
			return nil
		}
		if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("redis-server on port %d: no PONG within 10s", r.port)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restart starts the server again on the same port (after kill), empty.
func (r *redisServer) restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// kill stops the server with SIGKILL, by PID, and waits for it.
func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

func (r *redisServer) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

func (r *redisServer) stop() {
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
	}
	r.kill()
}

func (r *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// url is the limits_store URL of the server.
func (r *redisServer) url() string {
	if r.cluster {
		return "redis://" + r.addr() + "?cluster=true"
	}
	return "redis://" + r.addr() + "/0"
}

// client is a plain client for looking at the server's keys.
func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr(), Password: r.password()})
}

func (r *redisServer) password() string {
	for i, a := range r.extra {
		if a == "--requirepass" && i+1 < len(r.extra) {
			return r.extra[i+1]
		}
	}
	return ""
}

// pingRaw sends PING over a new connection and wants +PONG (or -NOAUTH:
// the server is up, it wants a password).
func pingRaw(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// newTestRedisStore builds a RedisStore on r under a prefix of its own and
// closes it when the test ends.
func newTestRedisStore(t testing.TB, r *redisServer, opts RedisOptions) *RedisStore {
	t.Helper()
	if opts.URL == "" {
		opts.URL = r.url()
	}
	if opts.Prefix == "" {
		opts.Prefix = testPrefix(t)
	}
	s, err := NewRedisStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// testPrefix is a key prefix unique to the test: tests share servers.
func testPrefix(t testing.TB) string {
	return strings.NewReplacer("/", ":", "{", "(", "}", ")", " ", "_").Replace(t.Name())
}

// crc16 is Redis Cluster's key hash (CRC16-CCITT, XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is the Cluster slot of a key name: the hash of its hash tag (the
// text between the first { and the first } after it, if not empty), else
// of the whole name.
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16([]byte(key)) % 16384)
}
