package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"
)

// StatsReport summarises audit records: what the tutorial's analysis script
// printed (calls per path with average, max and min time) and what an
// operator needs besides. Requests are counted by their "completed" record.
type StatsReport struct {
	Files      []string  `json:"files"`
	Since      time.Time `json:"since,omitzero"`
	First      time.Time `json:"first,omitzero"` // earliest record counted
	Last       time.Time `json:"last,omitzero"`  // latest record counted
	Lines      int       `json:"lines"`
	BadLines   int       `json:"bad_lines"`             // lines that are not audit records (never fatal)
	BadSamples []string  `json:"bad_samples,omitempty"` // file:line of the first few
	// BadFiles are files damaged part-way (a corrupt or cut .gz, a read
	// error): "file: why". Their records before the damage are counted.
	BadFiles []string `json:"bad_files,omitempty"`
	Requests int      `json:"requests"`
	Errors   int      `json:"errors"` // failed for the client: ServerErrors + Cut
	// ServerErrors are answers with status >= 500 (or an error without a
	// status); Cut are answers that began (status 2xx) but ended early
	// because the model server cut them (error "incomplete").
	ServerErrors int     `json:"server_errors"`
	Cut          int     `json:"cut"`
	ErrorRate    float64 `json:"error_rate"` // Errors / Requests
	Rejected     int     `json:"rejected"`   // refused by the guard (4xx or a limit)
	Flagged      int     `json:"flagged"`    // served, but marked by a policy rule
	Unfinished   int     `json:"unfinished"` // received with no completed record (in flight or crash)
	Admin        int     `json:"admin"`

	Paths      map[string]*PathStats `json:"paths"`
	Keys       map[string]*KeyStats  `json:"keys"`
	Models     map[string]int        `json:"models"`
	Statuses   map[string]int        `json:"statuses"`
	Rejections map[string]int        `json:"rejections"` // by reason: auth, forbidden, size, bad_request, not_found, limit:<name>, policy:<rule>
	// Policy counts the requests each policy rule (or built-in check)
	// flagged or rejected, in all and by key.
	Policy     map[string]*PolicyStats `json:"policy"`
	Actions    map[string]int          `json:"actions"` // admin records by action
	LatencyMS  Percentiles             `json:"latency_ms"`
	TTFTMS     Percentiles             `json:"ttft_ms"`
	TopClients []ClientCount           `json:"top_clients"`

	clients  map[string]int
	pending  map[string]bool
	lat, tft []float64
}

// PathStats is the tutorial script's line: calls and time per path.
type PathStats struct {
	Calls int     `json:"calls"`
	AvgMS float64 `json:"avg_ms"`
	MaxMS float64 `json:"max_ms"`
	MinMS float64 `json:"min_ms"`
	sum   float64
	mean  float64 // running mean: what AvgMS is when sum overflows
	timed int
}

// KeyStats are the counts of one key.
type KeyStats struct {
	Requests         int `json:"requests"`
	Rejected         int `json:"rejected"`
	Flagged          int `json:"flagged"` // served, but marked by a policy rule
	Errors           int `json:"errors"`  // 5xx and cut answers
	Cut              int `json:"cut"`
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// PolicyStats counts one policy rule's decisions: requests it flagged
// (served, marked) and rejected, in all and by key name ("" for requests
// without a key).
type PolicyStats struct {
	PolicyCount
	Keys map[string]*PolicyCount `json:"keys"`
}

// PolicyCount is a count of policy decisions.
type PolicyCount struct {
	Flagged  int `json:"flagged"`
	Rejected int `json:"rejected"`
}

// add counts one decision.
func (c *PolicyCount) add(action string) {
	switch action {
	case PolicyFlag:
		c.Flagged++
	case PolicyReject:
		c.Rejected++
	}
}

// Percentiles of a distribution (nearest rank); zero when no sample.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// ClientCount is one line of the top clients.
type ClientCount struct {
	Client   string `json:"client"`
	Requests int    `json:"requests"`
}

// topClients is how many clients the report lists.
const topClients = 10

// newStatsReport is an empty report.
func newStatsReport(files []string, since time.Time) *StatsReport {
	return &StatsReport{
		Files: files, Since: since,
		Paths: map[string]*PathStats{}, Keys: map[string]*KeyStats{}, Models: map[string]int{},
		Statuses: map[string]int{}, Rejections: map[string]int{}, Actions: map[string]int{},
		Policy:  map[string]*PolicyStats{},
		clients: map[string]int{}, pending: map[string]bool{}, TopClients: []ClientCount{},
	}
}

// ReadStats summarises the records of files (plain or .gz, any order) with
// a time at or after since (zero: all). Lines that are not records are
// counted, never fatal, and so is a file damaged part-way (BadFiles); a file
// that cannot be opened (missing, permission) is an error.
func ReadStats(files []string, since time.Time) (*StatsReport, error) {
	s := newStatsReport(files, since)
	for _, f := range files {
		err := s.readFile(f)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission):
			return s, err
		default:
			s.BadFiles = append(s.BadFiles, err.Error())
		}
	}
	s.finish()
	return s, nil
}

func (s *StatsReport) readFile(name string) error {
	rc, err := openLog(name)
	if err != nil {
		return fmt.Errorf("audit stats: %w", err)
	}
	defer rc.Close()
	lr := newLineReader(rc)
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit stats: %s: %w", name, err)
		}
		s.Lines++
		var r Record
		if json.Unmarshal(line, &r) != nil || r.Stage == "" {
			s.BadLines++
			if len(s.BadSamples) < 5 {
				s.BadSamples = append(s.BadSamples, fmt.Sprintf("%s:%d", name, lr.n))
			}
			continue
		}
		if !s.Since.IsZero() && r.Time.Before(s.Since) {
			continue
		}
		s.add(&r)
	}
}

// add counts one record.
func (s *StatsReport) add(r *Record) {
	if s.First.IsZero() || r.Time.Before(s.First) {
		s.First = r.Time
	}
	if r.Time.After(s.Last) {
		s.Last = r.Time
	}
	switch r.Stage {
	case StageAdmin:
		s.Admin++
		s.Actions[r.Action]++
		return
	case StageReceived:
		if r.RequestID != "" {
			s.pending[r.RequestID] = true
		}
		return
	case StageCompleted:
	default:
		return
	}
	delete(s.pending, r.RequestID)
	s.Requests++
	p := s.Paths[r.Path]
	if p == nil {
		p = &PathStats{MinMS: math.Inf(1)}
		s.Paths[r.Path] = p
	}
	p.Calls++
	if r.LatencyMS > 0 {
		p.timed++
		p.sum += r.LatencyMS
		p.mean += (r.LatencyMS - p.mean) / float64(p.timed)
		p.MaxMS = max(p.MaxMS, r.LatencyMS)
		p.MinMS = min(p.MinMS, r.LatencyMS)
		s.lat = append(s.lat, r.LatencyMS)
	}
	if r.TTFTMS > 0 {
		s.tft = append(s.tft, r.TTFTMS)
	}
	k := s.Keys[r.Key]
	if k == nil {
		k = &KeyStats{}
		s.Keys[r.Key] = k
	}
	k.Requests++
	k.PromptTokens += r.PromptTokens
	k.CompletionTokens += r.CompletionTokens
	if r.Model != "" {
		s.Models[r.Model]++
	}
	s.Statuses[strconv.Itoa(r.Status)]++
	if r.Client != "" {
		s.clients[r.Client]++
	}
	if reason := rejection(r); reason != "" {
		s.Rejected++
		k.Rejected++
		s.Rejections[reason]++
	} else if r.Status >= 500 || (r.Status == 0 && r.Error != "") {
		s.Errors++
		s.ServerErrors++
		k.Errors++
	} else if r.Error == ErrorIncomplete {
		// A stream the model server cut: the client got 200 and half an
		// answer. A failure for the operator, counted apart from 5xx.
		s.Errors++
		s.Cut++
		k.Errors++
		k.Cut++
	}
	s.addPolicy(r, k)
}

// addPolicy counts the policy decisions of a completed record, each rule
// and action once per request.
func (s *StatsReport) addPolicy(r *Record, k *KeyStats) {
	flagged := false
	for i, h := range r.Policy {
		if h.Action != PolicyFlag && h.Action != PolicyReject || slices.Contains(r.Policy[:i], h) {
			continue
		}
		flagged = flagged || h.Action == PolicyFlag
		ps := s.Policy[h.Rule]
		if ps == nil {
			ps = &PolicyStats{Keys: map[string]*PolicyCount{}}
			s.Policy[h.Rule] = ps
		}
		ps.add(h.Action)
		pk := ps.Keys[r.Key]
		if pk == nil {
			pk = &PolicyCount{}
			ps.Keys[r.Key] = pk
		}
		pk.add(h.Action)
	}
	if flagged {
		s.Flagged++
		k.Flagged++
	}
}

// rejection names why the guard refused a request, or "".
func rejection(r *Record) string {
	if r.Limit != "" {
		return "limit:" + r.Limit
	}
	for _, h := range r.Policy {
		if h.Action == PolicyReject && r.Status >= 400 && r.Status < 500 {
			return "policy:" + h.Rule
		}
	}
	switch r.Status {
	case 400:
		return "bad_request"
	case 401:
		return "auth"
	case 403:
		return "forbidden"
	case 404:
		return "not_found"
	case 413:
		return "size"
	case 429:
		return "limit"
	}
	if r.Status > 400 && r.Status < 500 {
		return strconv.Itoa(r.Status)
	}
	return ""
}

// finish computes the derived figures.
func (s *StatsReport) finish() {
	s.Unfinished = len(s.pending)
	if s.Requests > 0 {
		s.ErrorRate = float64(s.Errors) / float64(s.Requests)
	}
	for _, p := range s.Paths {
		if p.timed > 0 {
			// A damaged line can hold a latency near the float64 maximum:
			// the sum would be +Inf, which `audit stats --json` cannot
			// encode. Rounding must not put the average outside min..max.
			p.AvgMS = p.sum / float64(p.timed)
			if math.IsInf(p.AvgMS, 0) {
				p.AvgMS = p.mean
			}
			p.AvgMS = min(max(p.AvgMS, p.MinMS), p.MaxMS)
		} else {
			p.MinMS = 0
		}
	}
	s.LatencyMS = percentiles(s.lat)
	s.TTFTMS = percentiles(s.tft)
	for c, n := range s.clients {
		s.TopClients = append(s.TopClients, ClientCount{c, n})
	}
	sort.Slice(s.TopClients, func(i, j int) bool {
		a, b := s.TopClients[i], s.TopClients[j]
		return a.Requests > b.Requests || (a.Requests == b.Requests && a.Client < b.Client)
	})
	if len(s.TopClients) > topClients {
		s.TopClients = s.TopClients[:topClients]
	}
}

// percentiles computes nearest-rank percentiles of v (sorted in place).
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	sort.Float64s(v)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(v)))) - 1
		return v[max(0, min(i, len(v)-1))]
	}
	return Percentiles{Count: len(v), P50: rank(50), P95: rank(95), P99: rank(99), Max: v[len(v)-1]}
}

// WriteText prints the report for people.
func (s *StatsReport) WriteText(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	if s.Requests == 0 && s.Admin == 0 {
		p("no records")
		if !s.Since.IsZero() {
			p(" since %s", s.Since.Format(time.RFC3339))
		}
		p("\n")
	} else {
		p("records from %s to %s\n", s.First.Format(time.RFC3339), s.Last.Format(time.RFC3339))
	}
	p("requests %d\terrors %d (%.2f%%: %d 5xx, %d cut)\trejected %d\tflagged %d\tunfinished %d\tadmin %d\n\n",
		s.Requests, s.Errors, 100*s.ErrorRate, s.ServerErrors, s.Cut, s.Rejected, s.Flagged, s.Unfinished, s.Admin)
	p("PATH\tCALLS\tAVG ms\tMAX ms\tMIN ms\n")
	for _, k := range sortedKeys(s.Paths) {
		v := s.Paths[k]
		p("%s\t%d\t%.1f\t%.1f\t%.1f\n", k, v.Calls, v.AvgMS, v.MaxMS, v.MinMS)
	}
	p("\nKEY\tREQUESTS\tREJECTED\tERRORS\tTOKENS IN\tTOKENS OUT\n")
	for _, k := range sortedKeys(s.Keys) {
		v := s.Keys[k]
		name := k
		if name == "" {
			name = "(none)"
		}
		p("%s\t%d\t%d\t%d\t%d\t%d\n", name, v.Requests, v.Rejected, v.Errors, v.PromptTokens, v.CompletionTokens)
	}
	p("\n\tP50\tP95\tP99\tMAX\tN\n")
	p("latency ms\t%.1f\t%.1f\t%.1f\t%.1f\t%d\n", s.LatencyMS.P50, s.LatencyMS.P95, s.LatencyMS.P99, s.LatencyMS.Max, s.LatencyMS.Count)
	p("ttft ms\t%.1f\t%.1f\t%.1f\t%.1f\t%d\n", s.TTFTMS.P50, s.TTFTMS.P95, s.TTFTMS.P99, s.TTFTMS.Max, s.TTFTMS.Count)
	section := func(title string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		p("\n%s\tCOUNT\n", title)
		for _, k := range sortedKeys(m) {
			p("%s\t%d\n", k, m[k])
		}
	}
	section("STATUS", s.Statuses)
	section("REJECTED BY", s.Rejections)
	section("MODEL", s.Models)
	section("ADMIN ACTION", s.Actions)
	if len(s.Policy) > 0 {
		p("\nPOLICY RULE\tKEY\tFLAGGED\tREJECTED\n")
		for _, rule := range sortedKeys(s.Policy) {
			ps := s.Policy[rule]
			p("%s\t(all)\t%d\t%d\n", rule, ps.Flagged, ps.Rejected)
			for _, key := range sortedKeys(ps.Keys) {
				c, name := ps.Keys[key], key
				if name == "" {
					name = "(none)"
				}
				p("%s\t%s\t%d\t%d\n", rule, name, c.Flagged, c.Rejected)
			}
		}
	}
	if len(s.TopClients) > 0 {
		p("\nTOP CLIENTS\tREQUESTS\n")
		for _, c := range s.TopClients {
			p("%s\t%d\n", c.Client, c.Requests)
		}
	}
	if s.BadLines > 0 {
		p("\n%d of %d lines are not audit records (first: %v)\n", s.BadLines, s.Lines, s.BadSamples)
	}
	for _, b := range s.BadFiles {
		p("damaged file, read up to the damage: %s\n", b)
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
