package guard

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// auditSummaryEvery is how often a failing audit log is summarised.
const auditSummaryEvery = 10 * time.Second

// auditHealth logs the audit log's failures as the writer logs its own: the
// change of state once, then a summary every auditSummaryEvery while it
// lasts, then its end. The exact count is in glmctl_guard_requests_total
// {code="503"} and the audit writer's metrics.
type auditHealth struct {
	mu          sync.Mutex
	failing     bool
	since       time.Time
	lastSummary time.Time
	refused     int // since the failure began
	sinceLast   int // since the last summary
}

// failed notes a record that could not be written; refused: the request
// it belongs to was refused for it (a received record).
func (a *auditHealth) failed(log hclog.Logger, err error, refused bool) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if refused {
		a.refused++
		a.sinceLast++
	}
	switch {
	case !a.failing:
		a.failing, a.since, a.lastSummary = true, now, now
		a.sinceLast = 0
		log.Error("audit log cannot be written: refusing requests (503) until it can", "error", err)
	case now.Sub(a.lastSummary) >= auditSummaryEvery:
		log.Error("audit log still cannot be written", "for", now.Sub(a.since).Round(time.Second).String(),
			"refused", a.refused, "refused_since_last", a.sinceLast, "error", err)
		a.lastSummary, a.sinceLast = now, 0
	}
}

func (a *auditHealth) ok(log hclog.Logger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.failing {
		return
	}
	log.Info("audit log writable again: serving requests", "after", time.Since(a.since).Round(time.Millisecond).String(), "refused", a.refused)
	a.failing, a.refused, a.sinceLast = false, 0, 0
}
