//go:build !cgo

package gpu

import (
	"strings"
	"testing"
)

func TestOpenWithoutCgo(t *testing.T) {
	m, err := Open(nil)
	if m != nil || !IsUnavailable(err) {
		t.Fatalf("Open = %v, %v; want nil and ErrUnavailable", m, err)
	}
	if got, want := err.Error(), "NVML unavailable: glmctl was built without NVML (CGO_ENABLED=0)"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line")
	}
}
