package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"math"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assetFS embed.FS

// pageNames are the pages, each assets/<name>.html defining "content".
var pageNames = []string{"login", "error", "overview", "logs", "keys", "audit", "confirm", "secret"}

// pages are the parsed templates and the static files.
type pages struct {
	byName  map[string]*template.Template
	parts   *template.Template // the live sections ("part-programs", …)
	static  map[string]asset
	version string // of the static files, for cache busting
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

func loadPages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}, static: map[string]asset{}}
	sum := sha256.New()
	for _, name := range []string{"console.css", "console.js", "favicon.svg"} {
		b, err := assetFS.ReadFile("assets/" + name)
		if err != nil {
			return nil, fmt.Errorf("console asset %s: %w", name, err)
		}
		h := sha256.Sum256(b)
		sum.Write(h[:])
		ctype := mime.TypeByExtension(path.Ext(name))
		if strings.HasSuffix(name, ".js") {
			ctype = "text/javascript; charset=utf-8"
		}
		p.static[name] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(h[:8]) + `"`}
	}
	p.version = hex.EncodeToString(sum.Sum(nil)[:6])
	base, err := template.New("base").Funcs(funcs).ParseFS(assetFS, "assets/layout.html", "assets/parts.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	p.parts = base
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(assetFS, "assets/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"ago":      ago,
	"when":     when,
	"duration": humanDuration,
	"gib": func(b uint64) string {
		return fmt.Sprintf("%.1f", float64(b)/(1<<30))
	},
	"pct":  func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"join": strings.Join,
}

// view is what every page template gets: the common frame plus the
// sections the page shows (nil: not on this page).
type view struct {
	Title   string
	Nav     string // the page's name in the navigation
	Version string // of the static files
	User    string // the admin key's name; "" on the sign-in page
	CSRF    string
	Flash   string
	// FlashError marks Flash as a failure.
	FlashError bool
	Now        time.Time

	Programs *programsView
	GPUs     *gpusView
	Guard    *guardView
	Config   *configView
	Keys     *keysView
	Audit    *auditView
	Logs     *logsView
	Confirm  *confirmView
	Secret   *secretView
}

func (s *Server) newView(r *http.Request, sess *session, title string) *view {
	v := &view{Title: title, Now: s.now()}
	if sess != nil {
		v.User, v.CSRF = sess.name, sess.csrf
		v.Flash, v.FlashError = s.sessions.takeFlash(sess)
	}
	return v
}

// render writes a whole page; pages are never cached (they hold tokens and
// state).
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, v *view) {
	v.Version = s.pages.version
	if v.Now.IsZero() {
		v.Now = s.now()
	}
	if v.Nav == "" {
		v.Nav = name
	}
	var buf bytes.Buffer
	if err := s.pages.byName[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.Error("console: render page", "page", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// renderPart renders one live section ("programs", …) to a string.
func (s *Server) renderPart(name string, v *view) (string, error) {
	var buf bytes.Buffer
	if err := s.pages.parts.ExecuteTemplate(&buf, "part-"+name, v); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := s.pages.static[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(a.body)
}

// humanDuration renders 3d4h, 5h12m, 4m05s, 12s.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

// ago renders how long before now t was ("—" for a zero time).
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	if now.Before(t) {
		return "in " + humanDuration(t.Sub(now))
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// when renders a time in UTC, to the second ("—" for zero).
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// num renders a chart value with at most three significant digits.
func num(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "—"
	case f == 0:
		return "0"
	case math.Abs(f) >= 100:
		return fmt.Sprintf("%.0f", f)
	case math.Abs(f) >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}
