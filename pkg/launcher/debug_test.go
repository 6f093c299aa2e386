package launcher

import (
	"testing"
	"time"

	"github.com/glmctl/glmctl/pkg/config"
)

func TestDebugTiming(t *testing.T) {
	p := prog("p", selfCmd("sleep"))
	p.StartSecs = 0
	h := startSupervisor(t, []*config.Program{p}, nil, nil)
	t0 := time.Now()
	h.waitState("p", StateRunning, 10*time.Second)
	t.Logf("running after %s", time.Since(t0))
	t0 = time.Now()
	if err := h.s.Stop(ctxT(t, 10*time.Second), "p"); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped after %s", time.Since(t0))
	for _, e := range h.eventsFor("p") {
		t.Logf("%s %s -> %s %s", e.Time.Format("05.000"), e.From, e.To, e.Message)
	}
}
