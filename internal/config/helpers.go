package config

import (
	"net"
	"net/url"
	"reflect"
	"strings"
)

// UpstreamDial returns how to reach the guard's upstream: ("unix", PATH) for
// "unix:///PATH", else ("tcp", "host:port") with the scheme's default port
// filled in. It assumes a validated Config.
func (g *Guard) UpstreamDial() (network, address string) {
	u, err := url.Parse(g.Upstream)
	if err != nil {
		return "", ""
	}
	if u.Scheme == "unix" {
		if u.Path != "" {
			return "unix", u.Path
		}
		return "unix", u.Opaque
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return "tcp", net.JoinHostPort(u.Hostname(), port)
}

// LocalURL is the guard's root URL as seen from this machine, without /v1:
// an unspecified listen host (0.0.0.0, ::, "") becomes loopback, and the
// scheme is https when tls is set. `glmctl check --live` uses it.
func (g *Guard) LocalURL() string {
	host, port, err := net.SplitHostPort(g.Listen)
	if err != nil {
		return ""
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	scheme := "http"
	if g.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// Equal reports whether p and q would run the same way; a reload restarts a
// program only when it changed.
func (p *Program) Equal(q *Program) bool {
	return reflect.DeepEqual(p, q)
}
