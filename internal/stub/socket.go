package stub

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// boundSocket is a socket that is bound but not yet listening: connections
// to its address are refused, as they are while vLLM loads its weights, yet
// the address is reserved and known (port 0 resolves at bind time).
type boundSocket struct {
	fd   int
	addr net.Addr
	path string // unix socket file, "" for TCP
}

// bindTCP binds a TCP socket to addr ("host:port", port may be 0).
func bindTCP(addr string) (*boundSocket, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", addr, err)
	}
	var (
		family = syscall.AF_INET
		sa     syscall.Sockaddr
	)
	if ip4 := ta.IP.To4(); ta.IP == nil || ip4 != nil {
		s := &syscall.SockaddrInet4{Port: ta.Port}
		if ip4 != nil {
			copy(s.Addr[:], ip4)
		}
		sa = s
	} else {
		family = syscall.AF_INET6
		s := &syscall.SockaddrInet6{Port: ta.Port}
		copy(s.Addr[:], ta.IP.To16())
		sa = s
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	b := &boundSocket{fd: fd}
	switch s := got.(type) {
	case *syscall.SockaddrInet4:
		b.addr = &net.TCPAddr{IP: net.IP(s.Addr[:]).To16(), Port: s.Port}
	case *syscall.SockaddrInet6:
		b.addr = &net.TCPAddr{IP: net.IP(s.Addr[:]), Port: s.Port}
	default:
		b.addr = ta
	}
	return b, nil
}

// bindUnix binds a unix socket at path with the given file mode. A stale
// socket file (nothing accepts on it) is removed first; a live one or any
// other kind of file is an error.
func bindUnix(path string, mode os.FileMode) (*boundSocket, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		_ = syscall.Close(fd)
		_ = os.Remove(path)
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return &boundSocket{fd: fd, path: path, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// removeStaleSocket removes path when it is a socket nobody accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect socket path: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or pick another path", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("%s: another server is listening on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// listen starts listening and hands the socket to a net.Listener. The
// bound socket must not be used afterwards.
func (b *boundSocket) listen() (net.Listener, error) {
	if err := syscall.Listen(b.fd, syscall.SOMAXCONN); err != nil {
		b.close()
		return nil, fmt.Errorf("listen %s: %w", b.addr, err)
	}
	f := os.NewFile(uintptr(b.fd), "stub-listener")
	ln, err := net.FileListener(f) // duplicates the descriptor
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("listener from socket: %w", err)
	}
	return ln, nil
}

// close releases a socket that never listened.
func (b *boundSocket) close() {
	_ = syscall.Close(b.fd)
}
