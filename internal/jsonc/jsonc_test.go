package jsonc

import (
	"errors"
	"os"
	"testing"
)

func TestStripKeepsStringsAndOffsets(t *testing.T) {
	src := []byte("{\"a#b\": \"x//y\", # c1\n \"n\": 1 // c2\n}")
	got := Strip(src)
	if len(got) != len(src) {
		t.Fatalf("len = %d, want %d", len(got), len(src))
	}
	var v map[string]any
	if err := Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	if v["a#b"] != "x//y" || v["n"] != float64(1) {
		t.Fatalf("got %v", v)
	}
}

func TestEscapedQuoteInString(t *testing.T) {
	src := []byte(`{"k": "a\"#not a comment", "m": 2} # tail`)
	var v map[string]any
	if err := Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	if v["k"] != `a"#not a comment` {
		t.Fatalf("got %q", v["k"])
	}
}

func TestTutorialRateLimits(t *testing.T) {
	src, err := os.ReadFile("../../testdata/tutorial/rate_limits.json")
	if err != nil {
		t.Fatal("tutorial fixture:", err)
	}
	var v struct {
		RateLimits map[string]struct{ RPM, TPM int } `json:"rate_limits"`
	}
	if err := Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	if got, want := v.RateLimits["user2"].TPM, 30000; got != want {
		t.Fatalf("user2 tpm = %d, want %d", got, want)
	}
}

func TestErrorPositions(t *testing.T) {
	cases := []struct {
		name      string
		src       string
		line, col int
	}{
		{"syntax after comment", "{ # 注释 comment\n  \"a\": 1,\n  \"b\" 2\n}", 3, 7},
		{"type error", "{\n \"n\": \"x\"\n}", 2, 10},
		{"truncated", "{\n \"n\": 1", 2, 8},
		{"trailing data", "{}\n}", 2, 1},
		{"non-ascii column", "{\"é\": 1 # ü\n,}", 2, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v struct{ N int }
			err := Unmarshal([]byte(tc.src), &v)
			var je *Error
			if !errors.As(err, &je) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if je.Line != tc.line || je.Col != tc.col {
				t.Fatalf("at %d:%d (%v), want %d:%d", je.Line, je.Col, je, tc.line, tc.col)
			}
		})
	}
}

func TestInFile(t *testing.T) {
	one := &Error{Line: 3, Col: 7, Msg: "bad"}
	two := &Error{Line: 9, Col: 1, Msg: "worse"}
	err := InFile("/etc/x.json", errors.Join(one, two, errors.New("plain")))
	want := "/etc/x.json:3:7: bad\n/etc/x.json:9:1: worse\n/etc/x.json: plain"
	if err.Error() != want {
		t.Fatalf("got %q, want %q", err.Error(), want)
	}
	var je *Error
	if !errors.As(err, &je) || je.Line != 3 {
		t.Fatalf("errors.As lost the *Error: %v", je)
	}
	if InFile("p", nil) != nil {
		t.Fatal("nil must stay nil")
	}
}
