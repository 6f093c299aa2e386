package guard

import (
	"errors"
	"fmt"
	"os"

	"github.com/glmctl/glmctl/internal/jsonc"
)

// Limits is a parsed limits file (DESIGN.md "Limits file"): a default entry
// and per-key entries. A key without an entry uses the default; a dimension
// missing from an entry, or a missing default, is unlimited.
type Limits struct {
	Default Limit
	PerKey  map[string]Limit
}

// For returns the limits that apply to the key named name.
func (l *Limits) For(name string) Limit {
	if l == nil {
		return Limit{}
	}
	if lim, ok := l.PerKey[name]; ok {
		return lim
	}
	return l.Default
}

// ParseLimits reads a limits file. Problems that make it unusable are joined
// in the error, each a *jsonc.Error with line:col; unknown fields come back as
// warnings ("line:col: message").
func ParseLimits(src []byte) (*Limits, []string, error) {
	doc := jsonc.NewDoc(src)
	root, err := doc.Root()
	if err != nil {
		return nil, nil, err
	}
	var warns []string
	warn := func(off int64, format string, args ...any) {
		warns = append(warns, doc.Errorf(off, format, args...).Error())
	}
	var section *jsonc.Member
	for i := range root {
		if root[i].Name == "rate_limits" {
			if section != nil {
				return nil, warns, doc.Errorf(root[i].Offset, `"rate_limits" given twice: keep one`)
			}
			section = &root[i]
			continue
		}
		warn(root[i].Offset, "unknown field %q ignored", root[i].Name)
	}
	if section == nil {
		return nil, warns, doc.Errorf(0, `missing "rate_limits" object`)
	}
	entries, err := doc.Members(*section)
	if err != nil {
		return nil, warns, err
	}
	l := &Limits{PerKey: map[string]Limit{}}
	var errs []error
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Name] {
			errs = append(errs, doc.Errorf(e.Offset, "limits for %q defined twice", e.Name))
			continue
		}
		seen[e.Name] = true
		fields, err := doc.Members(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Names are matched exactly (encoding/json would fold "RPM" into
		// rpm while the warning says it is ignored); a repeated one is an
		// error, not "the last one wins".
		var lim Limit
		given := map[string]bool{}
		bad := false
		for _, f := range fields {
			var dst *int64
			switch f.Name {
			case "rpm":
				dst = &lim.RPM
			case "tpm":
				dst = &lim.TPM
			case "concurrency":
				dst = &lim.Concurrency
			default:
				warn(f.Offset, "limits for %q: unknown field %q ignored (names are case-sensitive: rpm, tpm, concurrency)", e.Name, f.Name)
				continue
			}
			if given[f.Name] {
				errs = append(errs, doc.Errorf(f.Offset, "limits for %q: %q given twice: keep one", e.Name, f.Name))
				bad = true
				continue
			}
			given[f.Name] = true
			if err := doc.Decode(f, dst); err != nil {
				errs = append(errs, err)
				bad = true
			}
		}
		if bad {
			continue
		}
		if lim.RPM < 0 || lim.TPM < 0 || lim.Concurrency < 0 {
			errs = append(errs, doc.Errorf(e.ValueOffset, "limits for %q: values must be 0 (unlimited) or more", e.Name))
			continue
		}
		if lim.RPM > int64(period) {
			errs = append(errs, doc.Errorf(e.ValueOffset, "limits for %q: rpm above %d is not supported", e.Name, int64(period)))
			continue
		}
		if e.Name == "default" {
			l.Default = lim
		} else {
			l.PerKey[e.Name] = lim
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, warns, err
	}
	return l, warns, nil
}

// ReadLimits reads and parses the limits file at path.
func ReadLimits(path string) (*Limits, []string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read limits file: %w", err)
	}
	l, w, err := ParseLimits(src)
	if err != nil {
		return nil, w, jsonc.InFile(path, err)
	}
	return l, w, nil
}
