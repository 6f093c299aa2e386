package keys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

func TestNewSecret(t *testing.T) {
	re := regexp.MustCompile(`^sk-[A-Za-z0-9]{43}$`)
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(s) || seen[s] {
			t.Fatalf("secret %q: bad form or repeated", s)
		}
		seen[s] = true
		for _, c := range s[3:] {
			counts[c]++
		}
	}
	// 86000 draws over 62 symbols: about 1387 each; a biased alphabet
	// (e.g. modulo 256) would skew the first symbols by ~25%.
	for _, c := range secretAlphabet {
		if n := counts[c]; n < 1150 || n > 1650 {
			t.Errorf("symbol %q drawn %d times, want about 1387", c, n)
		}
	}
}

func TestUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api_keys.json")
	if err := Update(path, false, func(*File) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file without create: %v", err)
	}
	// Concurrent in-process writers: the flock serialises them too.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := Update(path, true, func(f *File) error {
				return f.Add(&Entry{Name: fmt.Sprintf("k%d", i), SHA256: Hash(fmt.Sprintf("secret-%d", i))})
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	f, _, err := ReadFile(path)
	if err != nil || len(f.Entries) != 16 {
		t.Fatalf("after 16 writers: %v, %d entries", err, len(f.Entries))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	boom := errors.New("boom")
	if err := Update(path, false, func(f *File) error { f.Remove("k1"); return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("file written although fn failed")
	}
}

func TestHashClearAndRevoke(t *testing.T) {
	f, _, err := Parse([]byte(`{"api_keys": {"a": "sk-aaaaaaaaaaaa", "b": "sk-bbbbbbbbbbbb", "c": {"sha256": "` + Hash("sk-c") + `"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	was, err := f.Revoke("b")
	if err != nil || !was || f.Entry("b").Clear != "" || !f.Entry("b").Disabled {
		t.Fatalf("revoke b: %v %v %+v", was, err, f.Entry("b"))
	}
	if was, _ := f.Revoke("b"); was {
		t.Error("second revoke reports the key was enabled")
	}
	if _, err := f.Revoke("zz"); err == nil {
		t.Error("revoke of a missing key")
	}
	if got := f.HashClear(); len(got) != 1 || got[0] != "a" {
		t.Errorf("HashClear = %v", got)
	}
	set := NewSet(f)
	now := time.Now()
	if k, err := set.Lookup("sk-aaaaaaaaaaaa", now); err != nil || k.Name != "a" || k.Clear {
		t.Errorf("a after hash: %v %v", k, err)
	}
	if _, err := set.Lookup("sk-bbbbbbbbbbbb", now); !errors.Is(err, ErrDisabled) {
		t.Errorf("b after revoke: %v", err)
	}
}
