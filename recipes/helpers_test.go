package recipes

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// writeTree writes files (slash-separated relative path → content) under
// a new temporary directory and returns it. A path ending in "/" is
// created as an empty directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mustLoad loads path and fails the test on any error diagnostic,
// printing them as a user would see them.
func mustLoad(t *testing.T, path string, opts Options) *Recipe {
	t.Helper()
	l := NewLoader()
	r, diags := l.Load(path, opts)
	if diags.HasErrors() || r == nil {
		var buf bytes.Buffer
		_ = l.WriteDiagnostics(&buf, diags, false)
		t.Fatalf("loading %s: %d diagnostics:\n%s", path, len(diags), buf.String())
	}
	return r
}

// diagText renders diags for failure messages.
func diagText(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		if d.Subject != nil {
			b.WriteString(posString(*d.Subject))
			b.WriteString(": ")
		}
		b.WriteString(d.Summary)
		b.WriteString(" — ")
		b.WriteString(d.Detail)
		b.WriteString("\n")
	}
	return b.String()
}

// hclRangeZero is the zero range, to blank out ranges before comparing.
var hclRangeZero hcl.Range

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// wantDiags checks that diags are exactly want, each written
// "LINE,COL: summary" for a diagnostic about file.
func wantDiags(t *testing.T, diags hcl.Diagnostics, file string, want []string) {
	t.Helper()
	got := make(map[string]bool)
	for _, d := range diags {
		got[strings.TrimPrefix(posString(*d.Subject), file+":")+": "+d.Summary] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing %q", w)
		}
	}
	if len(diags) != len(want) {
		t.Errorf("got %d diagnostics, want %d:\n%s", len(diags), len(want), diagText(diags))
	}
}
