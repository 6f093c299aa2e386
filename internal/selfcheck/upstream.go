package selfcheck

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// upstream checks that the model server cannot be reached around the guard:
// a unix socket must not be connectable by other local users (no write bit
// for others); a loopback TCP upstream must refuse connections on this
// host's other addresses.
func (r *runner) upstream() Result {
	cfg := r.opts.Config
	if cfg == nil || cfg.Guard == nil {
		return Result{Name: CheckUpstream, Status: Skip, Detail: "no config with a guard block"}
	}
	network, addr := cfg.Guard.UpstreamDial()
	if network == "unix" {
		st, err := os.Stat(addr)
		if err != nil {
			return Result{Name: CheckUpstream, Status: Skip, Detail: fmt.Sprintf("cannot stat the upstream socket: %v", err)}
		}
		uid := -1
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid = int(sys.Uid)
		}
		perm := st.Mode().Perm()
		if perm&0o002 != 0 {
			return Result{Name: CheckUpstream, Status: Fail, Detail: fmt.Sprintf("unix socket %s has mode %04o: any local user can connect around the guard; run the model server with umask 007 or restrict its directory", addr, perm)}
		}
		return Result{Name: CheckUpstream, Status: Pass, Detail: fmt.Sprintf("unix socket %s, mode %04o, owner uid %d: not reachable from the network", addr, perm, uid)}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Result{Name: CheckUpstream, Status: Fail, Detail: fmt.Sprintf("upstream %q: %v", addr, err)}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return Result{Name: CheckUpstream, Status: Fail, Detail: fmt.Sprintf("upstream %s is not on loopback: anyone who reaches that address bypasses the guard", addr)}
	}
	ips := hostAddrs()
	if len(ips) == 0 {
		return Result{Name: CheckUpstream, Status: Skip, Optional: true, Detail: "this host has no address besides loopback: nothing outside can connect"}
	}
	for _, ip := range ips {
		target := net.JoinHostPort(ip.String(), port)
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err == nil {
			c.Close()
			return Result{Name: CheckUpstream, Status: Fail, Detail: fmt.Sprintf("the model server answers on %s: bind it to 127.0.0.1 or a unix socket (vLLM --uds)", target)}
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return Result{Name: CheckUpstream, Status: Skip, Detail: fmt.Sprintf("connect %s: %v", target, err)}
		}
	}
	return Result{Name: CheckUpstream, Status: Pass, Detail: fmt.Sprintf("port %s refused on %d non-loopback address(es)", port, len(ips))}
}

// hostAddrs returns this host's non-loopback unicast addresses.
func hostAddrs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.IsMulticast() {
			continue
		}
		out = append(out, n.IP)
	}
	return out
}
