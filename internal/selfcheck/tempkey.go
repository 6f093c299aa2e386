package selfcheck

import (
	"github.com/glmctl/glmctl/internal/atomicfile"

	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/glmctl/glmctl/internal/jsonc"
	"github.com/glmctl/glmctl/internal/keys"
	"github.com/glmctl/glmctl/pkg/guard"
)

// limitsSettle is the pause between writing the limit and the key.
const limitsSettle = 300 * time.Millisecond

// tempKey is a short-lived key with its own limits entry, added to the
// keys and limits files through their locked writers and removed by drop.
type tempKey struct {
	name, secret string
	keysFile     string
	limitsFile   string
	snippet      string // inserted into the limits file
}

// newTempKey adds a key named glmctl-check-<hex> with rpm limit rpm that
// expires after ttl. The limits entry is written first so that the key is
// never live under the default limits. Without a limits file ("") the key
// has no entry of its own and gets whatever the guard's defaults are.
func newTempKey(keysFile, limitsFile string, rpm int, ttl time.Duration, now time.Time) (*tempKey, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("temporary key: %w", err)
	}
	secret, err := keys.NewSecret()
	if err != nil {
		return nil, err
	}
	tk := &tempKey{name: "glmctl-check-" + hex.EncodeToString(b[:]), secret: secret, keysFile: keysFile, limitsFile: limitsFile}
	if limitsFile != "" {
		tk.snippet = fmt.Sprintf("\n%q: {\"rpm\": %d},", tk.name, rpm)
		if err := tk.editLimits(true); err != nil {
			return nil, err
		}
		// Let the guard's watcher (100 ms debounce) load the limit on its
		// own before the key exists, so the key's first request has it.
		time.Sleep(limitsSettle)
	}
	now = now.UTC().Truncate(time.Second)
	err = keys.Update(keysFile, false, func(f *keys.File) error {
		return f.Add(&keys.Entry{Name: tk.name, SHA256: keys.Hash(secret), Role: keys.RoleUser, Created: now, Expires: now.Add(ttl)})
	})
	if err != nil {
		if limitsFile != "" {
			_ = tk.editLimits(false)
		}
		return nil, fmt.Errorf("add temporary key: %w", err)
	}
	return tk, nil
}

// drop removes the temporary key, then its limits entry.
func (tk *tempKey) drop() error {
	err := keys.Update(tk.keysFile, false, func(f *keys.File) error {
		f.Remove(tk.name)
		return nil
	})
	if tk.limitsFile == "" {
		return err
	}
	return errors.Join(err, tk.editLimits(false))
}

// dropInto removes the temporary key and returns res, failed when the key
// could not be removed.
func (tk *tempKey) dropInto(res Result) Result {
	if err := tk.drop(); err != nil {
		return Result{Name: res.Name, Status: Fail, Detail: fmt.Sprintf("%s; and removing the temporary key %q failed: %v", res.Detail, tk.name, err)}
	}
	return res
}

// editLimits inserts (add) or removes the temporary entry in the limits
// file as text, so the file's comments and layout stay as they are. The
// result must parse, or nothing is written.
func (tk *tempKey) editLimits(add bool) error {
	unlock, err := keys.Lock(tk.limitsFile)
	if err != nil {
		return err
	}
	defer unlock()
	src, err := os.ReadFile(tk.limitsFile)
	if err != nil {
		return fmt.Errorf("read limits file: %w", err)
	}
	var out []byte
	if add {
		doc := jsonc.NewDoc(src)
		root, err := doc.Root()
		if err != nil {
			return fmt.Errorf("%s: %w", tk.limitsFile, err)
		}
		var sec *jsonc.Member
		for i := range root {
			if root[i].Name == "rate_limits" {
				sec = &root[i]
			}
		}
		if sec == nil || int(sec.ValueOffset) >= len(src) || src[sec.ValueOffset] != '{' {
			return fmt.Errorf("%s: no \"rate_limits\" object", tk.limitsFile)
		}
		members, err := doc.Members(*sec)
		if err != nil {
			return fmt.Errorf("%s: %w", tk.limitsFile, err)
		}
		snippet := tk.snippet
		if len(members) == 0 {
			snippet = snippet[:len(snippet)-1] // no comma before "}"
			tk.snippet = snippet
		}
		at := int(sec.ValueOffset) + 1
		out = append(append(append([]byte{}, src[:at]...), snippet...), src[at:]...)
	} else {
		i := bytes.Index(src, []byte(tk.snippet))
		if i < 0 {
			return fmt.Errorf("%s: the temporary entry %q was changed by someone else; remove it by hand", tk.limitsFile, tk.name)
		}
		out = append(append([]byte{}, src[:i]...), src[i+len(tk.snippet):]...)
	}
	if _, _, err := guard.ParseLimits(out); err != nil {
		return fmt.Errorf("%s: refusing to write limits that would not parse: %w", tk.limitsFile, err)
	}
	return writeAtomic(tk.limitsFile, out)
}

// writeAtomic replaces path with data, keeping its mode and owner.
func writeAtomic(path string, data []byte) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.Write(path, data, 0o600)
}
