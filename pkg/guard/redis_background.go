package guard

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Reconnection: while Redis is unreachable every call fails at once, and
// run probes it with a fresh client, every probeMin at first, backing off to
// probeMax, so a returning Redis is in use again within about probeMax. The
// fresh client replaces the old one (whose pool may have stopped dialing
// after many failures); the old one is closed retireAfter later, when the
// calls that still hold it are over.
const (
	probeMin     = 50 * time.Millisecond
	probeMax     = 400 * time.Millisecond
	probeTimeout = time.Second
	retireAfter  = 10 * time.Second
	drainTimeout = 2 * time.Second
)

// run is the store's background work: it renews the leases this store
// holds, probes Redis while it is down, and applies queued settlements once
// it is back.
func (s *RedisStore) run() {
	defer s.wg.Done()
	renew := time.NewTicker(s.lease / 3)
	defer renew.Stop()
	probe := time.NewTimer(time.Hour)
	probe.Stop()
	armed := false
	backoff := probeMin
	var upSince time.Time
	for {
		select {
		case <-s.done:
			probe.Stop()
			return
		case <-renew.C:
			if s.up.Load() {
				s.renew(context.Background())
			}
		case <-s.kick:
			switch {
			case !s.up.Load() && !armed:
				// Down again soon after a recovery (a fault the probe does
				// not see): keep backing off instead of flapping at probeMin.
				if time.Since(upSince) > probeMax {
					backoff = probeMin
				}
				armed = true
				probe.Reset(0)
			case s.up.Load():
				s.drain(context.Background())
			}
		case <-probe.C:
			armed = false
			if s.probe() {
				upSince = time.Now()
				s.renew(context.Background())
				s.drain(context.Background())
				continue
			}
			armed = true
			probe.Reset(backoff)
			backoff = min(2*backoff, probeMax)
		}
	}
}

// probe tries a fresh client; on success it becomes the store's client and
// the store is up again. Besides PING it reads a key of the store's, which
// a server still loading its data, or a cluster without the slot's master,
// refuses.
func (s *RedisStore) probe() bool {
	c := s.target.newClient()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	gs, _ := s.globalKeys()
	err := c.Ping(ctx).Err()
	if err == nil {
		err = c.Exists(ctx, gs).Err()
	}
	if err != nil {
		msg := err.Error()
		s.lastErr.Store(&msg)
		_ = c.Close()
		return false
	}
	old := s.client.Swap(&redisClient{c})
	time.AfterFunc(retireAfter, func() { _ = old.c.Close() })
	if s.up.CompareAndSwap(false, true) {
		s.m.up.Set(1)
		s.log.Info("limits store reachable again", "store", s.target.display)
	}
	return true
}

// renew extends every lease this store holds, one script per lease set,
// pipelined. A lease that ran out meanwhile is not revived.
func (s *RedisStore) renew(ctx context.Context) {
	s.mu.Lock()
	type batch struct {
		keys []string
		ids  []string
	}
	var batches []batch
	for k, ids := range s.held {
		st, ls := s.keys(k)
		batches = append(batches, batch{[]string{ls, st}, append([]string(nil), ids...)})
	}
	if len(s.heldGlobal) > 0 {
		st, ls := s.globalKeys()
		batches = append(batches, batch{[]string{ls, st}, append([]string(nil), s.heldGlobal...)})
	}
	s.mu.Unlock()
	if len(batches) == 0 {
		return
	}
	c, err := s.conn()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.lease/3)
	defer cancel()
	now, lease := s.nowArg(), s.lease.Microseconds()
	send := func() error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, b := range batches {
				args := make([]any, 0, 2+len(b.ids))
				args = append(args, now, lease)
				for _, id := range b.ids {
					args = append(args, id)
				}
				p.EvalSha(ctx, scriptRenew.Hash(), b.keys, args...)
			}
			return nil
		})
		return err
	}
	err = send()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted (or its script cache was flushed): load and resend.
		if err = scriptRenew.Load(ctx, c).Err(); err == nil {
			err = send()
		}
	}
	if err != nil {
		err = s.classify(ctx, "renew", err)
		if !errors.Is(err, ErrStoreUnavailable) {
			s.log.Error("limits store: leases not renewed", "store", s.target.display, "error", err)
		}
	}
}

// drain applies the queued settlements in order until Redis fails again.
func (s *RedisStore) drain(ctx context.Context) {
	for {
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			return
		}
		op := s.pending[0]
		s.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, drainTimeout)
		err := s.apply(actx, op)
		cancel()
		if err != nil && (errors.Is(err, ErrStoreUnavailable) || ctx.Err() != nil) {
			return // kept: run tries again once Redis is back
		}
		if err != nil {
			s.m.dropped.Inc()
			s.log.Error("limits store: queued settlement refused, dropped", "store", s.target.display, "key", op.key, "error", err)
		}
		s.mu.Lock()
		s.pending[0] = nil
		s.pending = s.pending[1:]
		s.m.pending.Set(float64(len(s.pending)))
		s.mu.Unlock()
	}
}

// redisMetrics are the store's own series (see Collectors).
type redisMetrics struct {
	up      prometheus.Gauge
	errors  *prometheus.CounterVec
	pending prometheus.Gauge
	dropped prometheus.Counter
	skipped prometheus.Counter
	admit   prometheus.Histogram
}

func newRedisMetrics() redisMetrics {
	return redisMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glmctl_guard_limits_store_up",
			Help: "1 while the shared limits store (Redis) answers, 0 while it cannot be reached.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glmctl_guard_limits_store_errors_total",
			Help: "Failed calls to the shared limits store, by operation (admit, finish, cancel, peek, slots, renew, ping).",
		}, []string{"op"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glmctl_guard_limits_store_settlements_pending",
			Help: "Settlements (finished or cancelled requests) waiting for the limits store to come back.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glmctl_guard_limits_store_settlements_dropped_total",
			Help: "Settlements given up: the waiting queue was full, the store was closed, or Redis refused them.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glmctl_guard_limits_store_settlements_skipped_total",
			Help: "Settlements that found their lease gone (run out while Redis was unreachable, or applied already): nothing changed.",
		}),
		admit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "glmctl_guard_limits_store_admit_duration_seconds",
			Help:    "Time one admission decision takes in the shared limits store, round trip included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
	}
}
