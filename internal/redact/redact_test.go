package redact_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/bakery-sh/bakery/internal/redact"
)

func TestMask(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		secrets []string
		want    string
	}{
		{"no secrets", "export TOKEN='s3cr3t'", nil, "export TOKEN='s3cr3t'"},
		{"one", "export TOKEN='s3cr3t'", []string{"s3cr3t"}, "export TOKEN='(sensitive value)'"},
		{"every occurrence", "s3cr3t and s3cr3t", []string{"s3cr3t"}, "(sensitive value) and (sensitive value)"},
		{"longer secret wins", "pass=hunter22", []string{"hunter2", "hunter22"}, "pass=(sensitive value)"},
		{"overlapping secrets leave nothing", "abcdefgh", []string{"abcdef", "cdefgh"}, "(sensitive value)"},
		{"overlapping occurrences", "aaaaa", []string{"aaaa"}, "(sensitive value)"},
		{"shorter than MinLen is kept", "x=abc y=1", []string{"abc", "1", ""}, "x=abc y=1"},
		{"exactly MinLen is masked", "x=abcd", []string{"abcd"}, "x=(sensitive value)"},
		{"multi-line secret", "a\nline1\nline2\nb", []string{"line1\nline2"}, "a\n(sensitive value)\nb"},
		{"each line of a multi-line secret", "out: line1\nout: line2\r\n", []string{"line1\r\nline2\r\n"}, "out: (sensitive value)\nout: (sensitive value)\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redact.Mask(tc.in, tc.secrets); got != tc.want {
				t.Errorf("Mask(%q, %q) = %q, want %q", tc.in, tc.secrets, got, tc.want)
			}
		})
	}
}

func TestWriterMasksASecretSplitAcrossWrites(t *testing.T) {
	const secret = "s3cr3t-value"
	line := "[DEBUG] starting remote command: export TOKEN='" + secret + "'; run\n"
	// Every split point, including inside the secret.
	for i := 1; i < len(line); i++ {
		var out strings.Builder
		w := redact.NewWriter(&out, secret)
		for _, part := range []string{line[:i], line[i:]} {
			if n, err := w.Write([]byte(part)); err != nil || n != len(part) {
				t.Fatalf("Write(%q) = %d, %v", part, n, err)
			}
		}
		want := "[DEBUG] starting remote command: export TOKEN='(sensitive value)'; run\n"
		if out.String() != want {
			t.Fatalf("split at %d: wrote %q, want %q", i, out.String(), want)
		}
	}
}

func TestWriterHoldsAnUnfinishedLineUntilFlush(t *testing.T) {
	var out strings.Builder
	w := redact.NewWriter(&out, "s3cr3t")
	fmt.Fprint(w, "one s3cr3t\ntwo s3c")
	if out.String() != "one (sensitive value)\n" {
		t.Fatalf("after the first write: %q, want only the complete line", out.String())
	}
	fmt.Fprint(w, "r3t")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "one (sensitive value)\ntwo (sensitive value)"; out.String() != want {
		t.Fatalf("after Flush: %q, want %q", out.String(), want)
	}
	if err := w.Flush(); err != nil || out.String() != "one (sensitive value)\ntwo (sensitive value)" {
		t.Fatalf("a second Flush wrote %q, %v", out.String(), err)
	}
}

func TestWriterAddMasksTheHeldLine(t *testing.T) {
	var out strings.Builder
	w := redact.NewWriter(&out)
	fmt.Fprint(w, "token=late-secret")
	w.Add("late-secret", "abc") // "abc" is too short to mask
	fmt.Fprint(w, " abc\n")
	if want := "token=(sensitive value) abc\n"; out.String() != want {
		t.Fatalf("wrote %q, want %q", out.String(), want)
	}
	if got := w.Secrets(); len(got) != 1 || got[0] != "late-secret" {
		t.Errorf("Secrets() = %q, want [late-secret]", got)
	}
	if got := w.Mask("a late-secret"); got != "a (sensitive value)" {
		t.Errorf("Mask = %q", got)
	}
}

// A line without a newline is not held forever: past 64 KiB it is
// written, except for what could be the start of a secret.
func TestWriterBoundsAnUnfinishedLine(t *testing.T) {
	const secret = "s3cr3t-value"
	var out strings.Builder
	w := redact.NewWriter(&out, secret)
	long := strings.Repeat("x", 70<<10)
	// The secret straddles where the writer cuts the long line.
	fmt.Fprint(w, long+secret[:5])
	if out.Len() == 0 {
		t.Fatal("a 70 KiB unfinished line was held entirely")
	}
	if strings.Contains(out.String(), secret[:5]) {
		t.Fatalf("the start of a possible secret was written before it could be checked")
	}
	fmt.Fprint(w, secret[5:]+" "+long+secret+long)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := long + redact.Placeholder + " " + long + redact.Placeholder + long
	if out.String() != want {
		t.Fatalf("wrote %d bytes with %d placeholders, want %d bytes with 2; leaked: %v",
			out.Len(), strings.Count(out.String(), redact.Placeholder), len(want), strings.Contains(out.String(), secret))
	}
}

func TestWriterIsSafeForConcurrentLoggers(t *testing.T) {
	var out strings.Builder
	w := redact.NewWriter(&out, "s3cr3t-value")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				fmt.Fprintf(w, "goroutine %d: s3cr3t-value\n", i)
			}
		}()
	}
	wg.Wait()
	if strings.Contains(out.String(), "s3cr3t") || strings.Count(out.String(), redact.Placeholder) != 400 {
		t.Fatalf("concurrent writes: %d placeholders, leaked %v", strings.Count(out.String(), redact.Placeholder), strings.Contains(out.String(), "s3cr3t"))
	}
}
