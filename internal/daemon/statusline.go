package daemon

import (
	"fmt"
	"strings"
)

// statusLine is the one-line summary sent as systemd's STATUS=, e.g.
// "vllm STARTING (loading 2m31s), ui STOPPED".
func (d *Daemon) statusLine() string {
	sts, err := d.sup.Status()
	if err != nil {
		return err.Error()
	}
	parts := make([]string, 0, len(sts))
	for _, s := range sts {
		p := s.Name + " " + s.State
		if s.Message != "" {
			p += fmt.Sprintf(" (%s)", s.Message)
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "no programs"
	}
	return strings.Join(parts, ", ")
}
