package console

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hashicorp/go-hclog"

	"github.com/glmctl/glmctl/internal/config"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/audit"
)

var screenshotFlag = flag.String("screenshot", "", "TestBrowser writes its 1280×900 screenshot of the overview here (e.g. ../../docs/console.png)")

// TestBrowser drives the console in a real headless chromium: sign in, see
// the stand-in vllm RUNNING, restart it through the confirmation dialog and
// see its restart count grow, see a restart made elsewhere appear without a
// reload, follow its log, revoke a key and see it refused, sign out — with no
// CSP violation or script error on the way.
func TestBrowser(t *testing.T) {
	br := startBrowser(t)

	dir := t.TempDir()
	kf, lf, secrets := testKeys(t, dir)
	b := newFakeBackend(t, kf, lf, "vllm", "webui")
	b.gpus = demoGPUs()
	auditPath := filepath.Join(dir, "audit.log")
	aw, err := audit.Open(&config.Audit{Path: auditPath, Fsync: "never"}, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = aw.Close() })
	m := newGuardMetrics()
	s, err := New(Options{Listen: "127.0.0.1:0", Backend: b, Audit: aw, AuditPath: auditPath, Gatherer: m.reg,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard})})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	simulateTraffic(t, m, s.sampler, time.Now(), s.opts.SampleEvery, s.opts.History)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("console Run: %v", err)
		}
	})
	base := "http://" + s.Addr().String()

	vllm := func(cell string) string { return `tr[data-program="vllm"] .` + cell }

	// Sign in.
	br.run("sign in",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.SendKeys(chromedp.CSS("#key"), secrets["root"]),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS(vllm("state"))),
	)
	if got := br.text(vllm("state")); got != "RUNNING" {
		t.Fatalf("vllm state %q, want RUNNING", got)
	}
	if got := br.text("#user"); got != "root" {
		t.Errorf("signed in as %q", got)
	}
	if got := br.text(vllm("restarts")); got != "0" {
		t.Fatalf("vllm restarts %q before any restart", got)
	}
	pid0 := br.text(vllm("pid"))

	// Programs that have run for a while, for the picture.
	b.backdate("vllm", 3*time.Hour+12*time.Minute)
	b.backdate("webui", 3*time.Hour+11*time.Minute)
	br.waitText(vllm("uptime"), equals("3h12m"), "3h12m")

	// The overview's screenshot, 1280×900.
	br.run("wait for the charts", chromedp.WaitVisible(chromedp.CSS(".charts svg.chart")))
	shot := get(br, "screenshot", chromedp.CaptureScreenshot())
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil || cfg.Width != 1280 || cfg.Height != 900 {
		t.Fatalf("screenshot: %dx%d, %v; want a 1280×900 PNG", cfg.Width, cfg.Height, err)
	}
	out := screenshotPath(t)
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the overview: %s", out)

	// Restart through the confirmation dialog.
	br.run("click Restart", chromedp.Click(chromedp.CSS(`button[data-action="restart-vllm"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	if q := br.text("#confirm-question"); q != "Restart vllm?" {
		t.Errorf("confirmation asks %q", q)
	}
	if n := b.restarts("vllm"); n != 0 {
		t.Fatalf("restarted before confirmation (%d)", n)
	}
	br.run("confirm", chromedp.Click(chromedp.CSS("#confirm-ok")))
	br.waitText(vllm("restarts"), equals("1"), "1 after the restart")
	br.waitText("#flash", contains("Restart vllm: requested"), "the restart's message")
	if got := br.text(vllm("state")); got != "RUNNING" {
		t.Errorf("vllm %q after the restart", got)
	}
	if pid1 := br.text(vllm("pid")); pid1 == pid0 {
		t.Errorf("vllm pid %s unchanged by the restart", pid1)
	}
	if rec := lastAdmin(t, auditPath, "console.restart"); rec.Key != "root" || rec.Target != "vllm" {
		t.Errorf("restart audit record %+v", rec)
	}

	// A restart made elsewhere (glmctl restart) shows up live, without a
	// reload of the page.
	get(br, "mark the page", chromedp.Evaluate[int](`window.noReloadMarker = 42`))
	if err := b.Restart(context.Background(), false, "vllm"); err != nil {
		t.Fatal(err)
	}
	br.waitText(vllm("restarts"), equals("2"), "2 after a restart from the CLI")
	if marker := get(br, "read the mark", chromedp.Evaluate[int](`window.noReloadMarker || 0`)); marker != 42 {
		t.Errorf("the page was reloaded to show the restart")
	}

	// Follow vllm's log.
	br.run("open the log", chromedp.Navigate(base+"/logs?program=vllm&follow=1"), chromedp.WaitVisible(chromedp.CSS("#log")))
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		line := "INFO followed line " + strconv.Itoa(i)
		b.emit("vllm", line)
		got := get(br, "read the log", chromedp.Text(chromedp.CSS("#log")))
		if strings.Contains(got, "INFO followed line") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no followed line in the log view:\n%s", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Revoke alice; the keys in force refuse her key.
	if _, err := b.Keys().Lookup(secrets["alice"], time.Now()); err != nil {
		t.Fatalf("alice before: %v", err)
	}
	br.run("revoke alice", chromedp.Navigate(base+"/keys"),
		chromedp.Click(chromedp.CSS(`button[data-action="revoke-alice"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-ok")))
	br.waitText(`tr[data-key="alice"] .key-state`, equals("revoked"), "revoked")
	if _, err := b.Keys().Lookup(secrets["alice"], time.Now()); !errors.Is(err, keys.ErrDisabled) {
		t.Errorf("alice's key after the revoke: %v, want %v", err, keys.ErrDisabled)
	}
	if rec := lastAdmin(t, auditPath, "console.key_revoke"); rec.Key != "root" || rec.Target != "alice" {
		t.Errorf("revoke audit record %+v", rec)
	}

	// Sign out: the console is closed again.
	br.run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	br.waitText("#flash", contains("Signed out"), "the sign-out message")
	br.run("open the overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	if u := br.location(); !strings.Contains(u, "/login") {
		t.Errorf("after sign-out / is at %s, want the sign-in page", u)
	}

	errs, logs := br.problems()
	for _, e := range errs {
		t.Errorf("browser: %s", e)
	}
	for _, l := range logs {
		t.Logf("browser console: %s", l)
	}
}

// lastAdmin returns the newest admin record of action in the audit log.
func lastAdmin(t *testing.T, path, action string) audit.Record {
	t.Helper()
	var found audit.Record
	if _, err := scanBackwards(path, 1<<30, func(r *auditLine) bool {
		if r.Stage == audit.StageAdmin && r.Action == action {
			found = *r
			return false
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// traffic plays a guard under a load that varies smoothly with phase (one
// cycle per sampled history): requests, some 5xx, latencies and times to
// first token, refusals, and the remaining budget of alice and root.
type traffic struct {
	m     *guardMetrics
	carry float64 // a fraction of a request, for the next step
}

func (tr *traffic) step(phase, seconds float64) {
	m := tr.m
	rate := 9 + 4*math.Sin(phase*1.5) + 1.5*math.Sin(phase*5)
	slow := 0.03 + 0.04*(1+math.Sin(phase*2.5))/2 // share of long generations
	errShare := 0.005 + 0.1*math.Max(0, math.Sin(phase*4-1)-0.85)/0.15
	tr.carry += rate * seconds
	reqs := int(tr.carry)
	tr.carry -= float64(reqs)
	for k := range reqs {
		frac := (float64(k) + 0.5) / float64(reqs) // this request's place in the spread
		code := "200"
		if frac > 1-errShare {
			code = "502"
		}
		m.requests.WithLabelValues("alice", "glm-4.7-flash", "/v1/chat/completions", code).Inc()
		lat := 0.15 + 0.8*frac
		if frac < slow {
			lat = 1.2 + 1.2*frac/slow
		}
		m.duration.WithLabelValues("/v1/chat/completions").Observe(lat)
		ttft := 0.03 + 0.04*frac
		if frac < slow/2 {
			ttft = 0.11 + 0.12*frac/slow
		}
		m.ttft.WithLabelValues("/v1/chat/completions").Observe(ttft)
	}
	if bump := math.Sin(phase*2 - 1); bump > 0.6 {
		m.rejections.WithLabelValues("alice", "rpm").Add(math.Round((bump - 0.6) * 10 * seconds))
	}
	if bump := math.Sin(phase*3 + 2); bump > 0.8 {
		m.rejections.WithLabelValues("alice", "tpm").Add(math.Round((bump - 0.8) * 10 * seconds))
	}
	m.inFlight.Set(math.Round(rate * 0.45))
	m.remReq.WithLabelValues("alice").Set(math.Max(0, math.Round(120-rate*6)))
	m.remTok.WithLabelValues("alice").Set(math.Max(0, math.Round(120000-rate*4100)))
	m.slots.WithLabelValues("alice").Set(math.Min(8, math.Round(rate/2)))
	m.remReq.WithLabelValues("root").Set(57)
	m.remTok.WithLabelValues("root").Set(51200)
}

// simulateTraffic fills the sampler with the last history of traffic, as if
// the console had been sampling all along (its first own sample, at Run,
// ends the last interval), then keeps the load going (every 100 ms) until the
// test ends, so that the live samples have traffic too.
func simulateTraffic(t *testing.T, m *guardMetrics, sp *sampler, now time.Time, every, history time.Duration) {
	tr := &traffic{m: m}
	n := int(history / every)
	cycle := history.Seconds()
	for i := 0; i < n; i++ {
		tr.step(float64(i)/float64(n)*2*math.Pi, every.Seconds())
		sp.sample(now.Add(-time.Duration(n-i) * every))
	}
	// The last interval's traffic, for the console's first own sample.
	tr.step(2*math.Pi, every.Seconds())
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case at := <-tick.C:
				tr.step(2*math.Pi*(1+at.Sub(now).Seconds()/cycle), 0.1)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
}
