package audit

import (
	"bytes"
	"fmt"
	"os"
)

// MinHMACKey is the shortest HMAC key ReadHMACKey accepts, in bytes.
const MinHMACKey = 16

// ReadHMACKey reads audit.hmac_key_file: its bytes, trailing whitespace
// (a final newline) removed. The daemon and `glmctl audit verify` read it
// the same way; e.g. `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`.
func ReadHMACKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit hmac key: %w", err)
	}
	b = bytes.TrimRight(b, " \t\r\n")
	if len(b) < MinHMACKey {
		return nil, fmt.Errorf("read audit hmac key %s: %d bytes, want at least %d", path, len(b), MinHMACKey)
	}
	return b, nil
}
