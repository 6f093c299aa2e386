package console

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/guard"
)

// keysView is the keys section: the keys file as it is on disk, with each
// key's usage against its limits.
type keysView struct {
	File       string
	LimitsFile string
	Err        string // the keys file cannot be read
	LimitsErr  string
	Rows       []keyRow
	// LastUsedFrom says where "last used" comes from.
	LastUsedFrom string
}

type keyRow struct {
	Name, Role, Models string
	Created, Expires   time.Time
	State, Class       string
	Rotated            int    // earlier secrets still in their grace
	Policy             string // the key's own request policy, "" for none
	LastUsed           time.Time
	RPM, TPM           bar
	Concurrency        bar
	Revoked            bool
}

// lastUsedCache keeps the audit scan for last-used times a little while:
// the keys section is polled.
type lastUsedCache struct {
	mu   sync.Mutex
	at   time.Time
	path string
	m    map[string]time.Time
}

const lastUsedTTL = 30 * time.Second

func (s *Server) keysView() *keysView {
	kf, lf := s.opts.Backend.GuardFiles()
	v := &keysView{File: kf, LimitsFile: lf}
	if kf == "" {
		v.Err = "No keys file is configured (guard.keys_file)."
		return v
	}
	f, _, err := keys.ReadFile(kf)
	if err != nil {
		v.Err = err.Error()
		return v
	}
	var lim *guard.Limits
	if lf != "" {
		if lim, _, err = guard.ReadLimits(lf); err != nil {
			v.LimitsErr = err.Error()
		}
	}
	latest, haveSample := s.sampler.latest()
	audited := s.auditLastUsed()
	v.LastUsedFrom = "the requests counter since the console started"
	if s.opts.AuditPath != "" {
		v.LastUsedFrom = fmt.Sprintf("the newest %d MiB of the audit log, and the requests counter since the console started", lastUsedScan>>20)
	}
	now := s.now()
	for _, e := range f.Entries {
		row := keyRow{Name: e.Name, Role: e.Role, Models: "all", Created: e.Created, Expires: e.Expires,
			State: "active", Class: "ok", Revoked: e.Disabled}
		if len(e.Models) > 0 {
			row.Models = strings.Join(e.Models, ", ")
		}
		switch {
		case e.Disabled:
			row.State, row.Class = "revoked", "bad"
		case !e.Expires.IsZero() && !now.Before(e.Expires):
			row.State, row.Class = "expired", "bad"
		case e.Clear != "":
			row.State, row.Class = "clear text", "warn"
		}
		for _, p := range e.Previous {
			if now.Before(p.Until) {
				row.Rotated++
			}
		}
		row.Policy = policyText(e.Policy)
		row.LastUsed = audited[e.Name]
		if t := s.sampler.keyLastUsed(e.Name); t.After(row.LastUsed) {
			row.LastUsed = t
		}
		l := lim.For(e.Name)
		row.RPM = usage(latest.remainingReq, haveSample, e.Name, l.RPM, "rpm")
		row.TPM = usage(latest.remainingTok, haveSample, e.Name, l.TPM, "tpm")
		row.Concurrency = inUse(latest.slotsInUse, haveSample, e.Name, l.Concurrency, "concurrent")
		v.Rows = append(v.Rows, row)
	}
	return v
}

// usage is a key's use of one limit: limit minus what the guard reports as
// remaining (unknown without a sample or a remaining metric).
func usage(remaining map[string]float64, have bool, name string, limit int64, unit string) bar {
	if limit <= 0 {
		return usageBar(0, 0, unit)
	}
	rem, ok := remaining[name]
	if !have || !ok {
		return usageBar(-1, float64(limit), unit)
	}
	return usageBar(float64(limit)-rem, float64(limit), unit)
}

// inUse is a key's use of a limit the guard reports as used (concurrency
// slots), unknown without a sample or its series.
func inUse(used map[string]float64, have bool, name string, limit int64, unit string) bar {
	if limit <= 0 {
		return usageBar(0, 0, unit)
	}
	n, ok := used[name]
	if !have || !ok {
		return usageBar(-1, float64(limit), unit)
	}
	return usageBar(n, float64(limit), unit)
}

// auditLastUsed returns the newest record time per key in the tail of the
// audit log (cached for lastUsedTTL).
func (s *Server) auditLastUsed() map[string]time.Time {
	if s.opts.AuditPath == "" {
		return nil
	}
	c := &s.lastUsed
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.now()
	if c.m != nil && c.path == s.opts.AuditPath && now.Sub(c.at) < lastUsedTTL && !now.Before(c.at) {
		return c.m
	}
	m := map[string]time.Time{}
	_, _ = scanBackwards(s.opts.AuditPath, lastUsedScan, func(r *auditLine) bool {
		if r.Key != "" && r.Stage != "admin" && r.Time.After(m[r.Key]) {
			m[r.Key] = r.Time
		}
		return true
	})
	c.m, c.at, c.path = m, now, s.opts.AuditPath
	return m
}

// lastUsedScan is how much of the audit log's end the last-used scan reads.
const lastUsedScan = 8 << 20

// keyName is what a new key may be called: no spaces or quotes, so it is
// safe in metrics labels, audit records and shells.
var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// secretView shows a new secret, once.
type secretView struct {
	Name, Secret, Verb string
	Until              time.Time
}

func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, sess *session) {
	v := s.newView(r, sess, "Keys")
	s.fill(v, "keys")
	s.render(w, r, http.StatusOK, "keys", v)
}

func (s *Server) keysFile() (string, error) {
	kf, _ := s.opts.Backend.GuardFiles()
	if kf == "" {
		return "", errors.New("no keys file is configured (guard.keys_file)")
	}
	return kf, nil
}

func (s *Server) keyCreate(w http.ResponseWriter, r *http.Request, sess *session) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	role := r.PostFormValue("role")
	if role == "" {
		role = keys.RoleUser
	}
	var problems []string
	if !keyName.MatchString(name) {
		problems = append(problems, "a name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
	}
	if role != keys.RoleUser && role != keys.RoleAdmin {
		problems = append(problems, "the role is user or admin")
	}
	now := s.now().UTC().Truncate(time.Second)
	var expires time.Time
	if e := strings.TrimSpace(r.PostFormValue("expires")); e != "" {
		var err error
		if expires, err = parseExpiry(e, now); err != nil {
			problems = append(problems, err.Error())
		}
	}
	var models []string
	for _, m := range strings.Split(r.PostFormValue("models"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			models = append(models, m)
		}
	}
	if len(problems) > 0 {
		s.done(w, r, sess, "/keys", "Key not created", errors.New(strings.Join(problems, "; ")))
		return
	}
	detail := fmt.Sprintf("A new %s key named %q for %s", role, name, modelsText(models))
	if !expires.IsZero() {
		detail += ", expiring " + when(expires)
	}
	if !s.confirmed(w, r, sess, confirmView{Question: fmt.Sprintf("Create key %s?", name), Detail: detail + ". Its secret is shown once.",
		Button: "Create " + name, Back: "/keys"}) {
		return
	}
	path, err := s.keysFile()
	secret := ""
	if err == nil {
		secret, err = keys.NewSecret()
	}
	if err == nil {
		err = keys.Update(path, true, func(f *keys.File) error {
			if old := f.Entry(name); old != nil {
				if old.Disabled {
					return fmt.Errorf("key %q exists and is revoked; reissue it with glmctl keys new %s --replace", name, name)
				}
				return fmt.Errorf("key %q exists; rotate it instead", name)
			}
			return f.Add(&keys.Entry{Name: name, SHA256: keys.Hash(secret), Role: role, Models: models, Created: now, Expires: expires})
		})
	}
	s.record(r, sess, "console.key_create", name, err)
	if err != nil {
		s.done(w, r, sess, "/keys", "Key not created", err)
		return
	}
	s.showSecret(w, r, sess, &secretView{Name: name, Secret: secret, Verb: "created"})
}

func modelsText(models []string) string {
	if len(models) == 0 {
		return "every model"
	}
	return strings.Join(models, ", ")
}

func (s *Server) keyRotate(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PostFormValue("name")
	graceText := strings.TrimSpace(r.PostFormValue("grace"))
	if graceText == "" {
		graceText = "24h"
	}
	grace, err := time.ParseDuration(graceText)
	if err != nil || grace < 0 {
		s.done(w, r, sess, "/keys", "Key not rotated", fmt.Errorf("grace %q: give a duration such as 24h or 30m (0 ends the old secret now)", graceText))
		return
	}
	detail := fmt.Sprintf("A new secret for %s; the old one keeps working for %s.", name, grace)
	if grace == 0 {
		detail = fmt.Sprintf("A new secret for %s; the old one stops working now.", name)
	}
	if !s.confirmed(w, r, sess, confirmView{Question: fmt.Sprintf("Rotate key %s?", name), Detail: detail,
		Button: "Rotate " + name, Danger: true, Back: "/keys"}) {
		return
	}
	now := s.now().UTC().Truncate(time.Second)
	var until time.Time
	if grace > 0 {
		until = now.Add(grace)
	}
	path, err := s.keysFile()
	secret := ""
	if err == nil {
		secret, err = keys.NewSecret()
	}
	if err == nil {
		err = keys.Update(path, false, func(f *keys.File) error {
			if e := f.Entry(name); e != nil && e.Disabled {
				return fmt.Errorf("key %q is revoked; reissue it with glmctl keys new %s --replace", name, name)
			}
			return f.Rotate(name, secret, until, now)
		})
	}
	s.record(r, sess, "console.key_rotate", name, err)
	if err != nil {
		s.done(w, r, sess, "/keys", "Key not rotated", err)
		return
	}
	s.showSecret(w, r, sess, &secretView{Name: name, Secret: secret, Verb: "rotated", Until: until})
}

func (s *Server) keyRevoke(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PostFormValue("name")
	detail := fmt.Sprintf("%s stops working within a second: the guard refuses it (401) and audits who still uses it. The entry stays in the file, disabled.", name)
	if name == sess.name {
		detail += " It is the key you signed in with: this session ends too."
	}
	if !s.confirmed(w, r, sess, confirmView{Question: fmt.Sprintf("Revoke key %s?", name), Detail: detail,
		Button: "Revoke " + name, Danger: true, Back: "/keys"}) {
		return
	}
	path, err := s.keysFile()
	var was bool
	if err == nil {
		err = keys.Update(path, false, func(f *keys.File) error {
			was, err = f.Revoke(name)
			return err
		})
	}
	s.record(r, sess, "console.key_revoke", name, err)
	msg := fmt.Sprintf("Key %s revoked", name)
	if err == nil && !was {
		msg = fmt.Sprintf("Key %s was already revoked", name)
	}
	if err == nil {
		if n := s.sessions.endKey(name); n > 0 {
			s.log.Info("console: sessions of a revoked key ended", "key", name, "sessions", n)
		}
		if name == sess.name {
			s.clearSessionCookie(w)
			http.Redirect(w, r, "/login?why=refused", http.StatusSeeOther)
			return
		}
	}
	s.done(w, r, sess, "/keys", msg, err)
}

// showSecret keeps a new secret in the session for one view and sends the
// browser to it (POST, redirect, GET: reloading the page does not repeat
// the action).
func (s *Server) showSecret(w http.ResponseWriter, r *http.Request, sess *session, sv *secretView) {
	s.sessions.putSecret(sess, sv)
	http.Redirect(w, r, "/keys/secret", http.StatusSeeOther)
}

// secretPage shows the new secret once; the page is never cached, and the
// secret is dropped from memory as it is rendered.
func (s *Server) secretPage(w http.ResponseWriter, r *http.Request, sess *session) {
	sv := s.sessions.takeSecret(sess)
	if sv == nil {
		s.sessions.setFlash(sess, "A new secret is shown only once; rotate the key for another.", true)
		http.Redirect(w, r, "/keys", http.StatusSeeOther)
		return
	}
	v := s.newView(r, sess, "Key "+sv.Verb)
	v.Nav = "keys"
	v.Secret = sv
	s.render(w, r, http.StatusOK, "secret", v)
}

// parseExpiry reads an expiry as `glmctl keys new --expires` does: a Go
// duration, a number of days ("30d"), a date (midnight UTC) or an RFC 3339
// time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 {
			return now.AddDate(0, 0, days), nil
		}
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if !t.After(now) {
				return time.Time{}, fmt.Errorf("expiry %q is in the past", s)
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("expiry %q: give a duration (90m, 720h, 30d) or a date (2027-01-01)", s)
}

// policyText is a key's own request policy in a few words ("max_tokens
// 500 · deny tools, logprobs"), "" for none.
func policyText(p *keys.PolicyOverride) string {
	if p == nil {
		return ""
	}
	var parts []string
	if p.MaxPromptTokens > 0 {
		parts = append(parts, fmt.Sprintf("max_prompt_tokens %d", p.MaxPromptTokens))
	}
	if p.MaxTokens > 0 {
		parts = append(parts, fmt.Sprintf("max_tokens %d", p.MaxTokens))
	}
	if len(p.DenyParams) > 0 {
		parts = append(parts, "deny "+strings.Join(p.DenyParams, ", "))
	}
	return strings.Join(parts, " · ")
}
