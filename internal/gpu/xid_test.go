//go:build cgo

package gpu

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/testutil"
)

type xidEvent struct {
	gpu  int
	uuid string
	xid  uint64
}

func TestWatchXID(t *testing.T) {
	f := newFakeNVML(t, 4)
	var logs testutil.SyncBuffer
	m := mustOpen(t, f, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
	got := make(chan xidEvent, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.WatchXID(ctx, func(gpu int, uuid string, xid uint64) { got <- xidEvent{gpu, uuid, xid} })
	}()

	// A non-XID event is ignored; the XID one on GPU 2 is delivered.
	f.events <- nvml.EventData{Device: f.srv.Devices[1], EventType: nvml.EventTypeSingleBitEccError, EventData: 1}
	f.events <- nvml.EventData{Device: f.srv.Devices[2], EventType: nvml.EventTypeXidCriticalError, EventData: 79}
	select {
	case ev := <-got:
		if want := (xidEvent{2, uuidOf(2), 79}); ev != want {
			t.Errorf("event = %+v, want %+v", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no XID event delivered")
	}
	f.events <- nvml.EventData{Device: f.srv.Devices[2], EventType: nvml.EventTypeXidCriticalError, EventData: 48}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("second XID event not delivered")
	}
	if n := m.XIDErrors(2); n != 2 {
		t.Errorf("XIDErrors(2) = %d, want 2", n)
	}
	if n := m.XIDErrors(1); n != 0 {
		t.Errorf("XIDErrors(1) = %d, want 0", n)
	}
	devs, err := m.Snapshot()
	if err != nil || devs[2].XIDErrors != 2 || devs[2].LastXID != 48 || devs[1].LastXID != 0 {
		t.Errorf("Snapshot XIDErrors = %d, LastXID = %d (GPU 1: %d), %v; want 2, 48 (0)", devs[2].XIDErrors, devs[2].LastXID, devs[1].LastXID, err)
	}
	if l := logs.String(); !strings.Contains(l, "GPU XID critical error") || !strings.Contains(l, "xid=79") ||
		!strings.Contains(l, "fallen off the bus") || !strings.Contains(l, "uuid="+uuidOf(2)) {
		t.Errorf("log = %q, want the XID logged with its GPU and meaning", l)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchXID = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchXID did not stop on cancel")
	}
}

func TestWatchXIDStopsOnClose(t *testing.T) {
	f := newFakeNVML(t, 4)
	m, err := OpenLibrary(f.srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.xidWait = 20 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- m.WatchXID(context.Background(), nil) }()
	f.events <- nvml.EventData{Device: f.srv.Devices[0], EventType: nvml.EventTypeXidCriticalError, EventData: 13}
	waitFor(t, "the event counted", func() bool { return m.XIDErrors(0) == 1 })
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchXID = %v after Close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchXID did not stop on Close")
	}
	if err := m.WatchXID(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("WatchXID after Close = %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWatchXIDUnsupported(t *testing.T) {
	f := newFakeNVML(t, 2)
	for _, d := range f.srv.Devices {
		d.(*server.Device).RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.ERROR_NOT_SUPPORTED }
	}
	m := mustOpen(t, f, nil)
	err := m.WatchXID(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "register XID events") {
		t.Errorf("WatchXID = %v, want a registration error", err)
	}
}
