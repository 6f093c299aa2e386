package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/glmctl/glmctl/internal/jsonc"
)

// secretAlphabet is base62: letters and digits, nothing a shell, a URL or a
// config file would need to quote.
const secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// SecretLen is the number of base62 characters NewSecret puts after "sk-":
// 43 characters carry 256 bits.
const SecretLen = 43

// NewSecret returns a new random key from crypto/rand: "sk-" followed by
// SecretLen base62 characters, drawn without modulo bias.
func NewSecret() (string, error) {
	out := make([]byte, 0, 3+SecretLen)
	out = append(out, "sk-"...)
	var buf [64]byte
	for len(out) < cap(out) {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("generate key: %w", err)
		}
		for _, b := range buf {
			// 248 = 4 × 62: bytes at or above it would favour the first letters.
			if b >= 248 || len(out) == cap(out) {
				continue
			}
			out = append(out, secretAlphabet[b%62])
		}
	}
	return string(out), nil
}

// LockPath is the sibling file Update locks for path ("<path>.lock").
func LockPath(path string) string { return path + ".lock" }

// Lock takes an exclusive flock on LockPath(path), creating it (mode 0600)
// if needed, and returns the function that releases it. Every writer of a
// keys or limits file holds it across read, modify and write, so two
// concurrent `glmctl keys` commands never lose an update.
func Lock(path string) (unlock func(), err error) {
	lf, err := os.OpenFile(LockPath(path), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(lf.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		lf.Close()
	}, nil
}

// Update is the locked read-modify-write of the keys file at path: it takes
// Lock(path), reads and parses the file (a missing file counts as an empty
// one when create is set), calls fn, and writes the result atomically, mode
// and owner kept, never a file that would not parse. The file is edited in
// its own text: comments, layout and the entries fn did not change stay as
// they were (see layout.go). Nothing is written when fn returns an error.
func Update(path string, create bool, fn func(f *File) error) error {
	unlock, err := Lock(path)
	if err != nil {
		return err
	}
	defer unlock()
	src, err := os.ReadFile(path)
	var f, orig *File
	switch {
	case err == nil:
		if f, _, err = Parse(src); err != nil {
			return jsonc.InFile(path, err)
		}
		orig, _, _ = Parse(src) // a second copy: what fn changed is told by comparing
	case create && errors.Is(err, fs.ErrNotExist):
		f = &File{}
	default:
		return fmt.Errorf("read keys file: %w", err)
	}
	if err := fn(f); err != nil {
		return err
	}
	var data []byte
	if orig != nil {
		data, err = edit(src, orig, f)
	} else {
		data, err = f.Marshal()
	}
	if err == nil {
		err = writeFile(path, data)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}

// HashClear turns every clear-text entry of f into the hashed form (its
// SHA-256, role user) and returns the names it changed, in file order.
func (f *File) HashClear() []string {
	var names []string
	for _, e := range f.Entries {
		if e.Clear == "" {
			continue
		}
		e.SHA256, e.Clear = Hash(e.Clear), ""
		if e.Role == "" {
			e.Role = RoleUser
		}
		names = append(names, e.Name)
	}
	return names
}

// Revoke disables the entry named name (a clear-text entry is hashed first,
// so the file no longer holds the secret). The entry stays in the file, so
// audit records naming it keep their meaning and the name is not reused by
// accident. It reports whether the key was enabled before.
func (f *File) Revoke(name string) (bool, error) {
	e := f.Entry(name)
	if e == nil {
		return false, fmt.Errorf("revoke key %q: no such key", name)
	}
	if e.Clear != "" {
		e.SHA256, e.Clear = Hash(e.Clear), ""
		if e.Role == "" {
			e.Role = RoleUser
		}
	}
	was := !e.Disabled
	e.Disabled = true
	return was, nil
}
