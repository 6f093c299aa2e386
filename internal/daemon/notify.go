package daemon

import (
	"context"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
)

// notifier speaks systemd's sd_notify protocol. Outside systemd
// (no NOTIFY_SOCKET) every call is a cheap no-op.
type notifier struct {
	logger   hclog.Logger
	watchdog time.Duration
}

func newNotifier(logger hclog.Logger) *notifier {
	wd, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("systemd watchdog settings unreadable", "error", err)
	}
	return &notifier{logger: logger, watchdog: wd}
}

func (n *notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.logger.Debug("sd_notify", "state", state, "error", err)
	}
}

// Ready tells systemd the listeners are up (or a reload finished).
func (n *notifier) Ready() { n.send(sd.SdNotifyReady) }

// Stopping tells systemd a graceful stop began.
func (n *notifier) Stopping() { n.send(sd.SdNotifyStopping) }

// Reloading tells systemd a reload began.
func (n *notifier) Reloading() {
	n.send(sd.SdNotifyReloading + "\nMONOTONIC_USEC=" + sd.SdNotifyMonotonicUsec())
}

// Run pings the watchdog at half its interval and refreshes STATUS= with
// status() every few seconds (load progress shows in `systemctl status`).
func (n *notifier) Run(ctx context.Context, status func() string) {
	every := 5 * time.Second
	if n.watchdog > 0 && n.watchdog/2 < every {
		every = n.watchdog / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := ""
	for {
		if n.watchdog > 0 {
			n.send(sd.SdNotifyWatchdog)
		}
		if s := status(); s != last {
			n.send("STATUS=" + s)
			last = s
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
