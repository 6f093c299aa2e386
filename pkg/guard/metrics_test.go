package guard

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLint(t *testing.T) {
	h := newHarness(t)
	h.do(t, "GET", "/v1/models", keyUser1, nil)
	h.do(t, "GET", "/v1/models", "", nil)
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(h.g.m.reloadOK); n != 2 {
		t.Fatalf("reload gauges for %d files, want keys and limits", n)
	}
}
