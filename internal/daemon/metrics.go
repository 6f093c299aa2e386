package daemon

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/pkg/launcher"
)

// registerBuildInfo adds glmctl_build_info and the Go and process collectors.
func registerBuildInfo(reg *prometheus.Registry, version string) {
	bi := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "glmctl_build_info",
		Help:        "A metric with a constant 1 value labelled by glmctl's version and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	bi.Set(1)
	reg.MustRegister(bi,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// registerProgramMetrics adds the programs' collector (glmctl_program_*,
// read from the supervisor at scrape time) to reg. Registering it a second
// time is not an error.
func registerProgramMetrics(reg prometheus.Registerer, sup *launcher.Supervisor) error {
	if err := reg.Register(launcher.NewCollector(sup)); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil
		}
		return fmt.Errorf("register program metrics: %w", err)
	}
	return nil
}

// MetricsAddr returns the address /metrics listens on once Run has bound it,
// else nil (also when the config has no metrics block).
func (d *Daemon) MetricsAddr() net.Addr {
	if d.metrics == nil {
		return nil
	}
	if a := d.metrics.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// metricsServer serves GET /metrics from the daemon's own registry.
type metricsServer struct {
	cfg    *config.Metrics
	srv    *http.Server
	ln     net.Listener
	addr   atomic.Pointer[net.Addr]
	logger hclog.Logger
}

func newMetricsServer(cfg *config.Metrics, reg *prometheus.Registry, logger hclog.Logger) (*metricsServer, error) {
	var token []byte
	if cfg.BearerTokenFile != "" {
		var err error
		if token, err = readBearerToken(cfg.BearerTokenFile); err != nil {
			return nil, err
		}
	} else if host, _, err := net.SplitHostPort(cfg.Listen); err == nil && !config.IsLoopback(host) {
		logger.Warn("metrics listen beyond loopback without bearer_token_file: anyone who can reach it can read /metrics", "listen", cfg.Listen)
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if len(token) > 0 {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="glmctl metrics"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
	return &metricsServer{
		cfg:    cfg,
		logger: logger,
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute},
	}, nil
}

// Listen binds the metrics address.
func (m *metricsServer) Listen() error {
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("metrics listen: %w", err)
	}
	m.ln = ln
	a := ln.Addr()
	m.addr.Store(&a)
	return nil
}

// Run serves until ctx is cancelled.
func (m *metricsServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(m.ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(sctx)
	return nil
}
