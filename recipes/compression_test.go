package recipes

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// loadContainer loads a recipe whose only container block has the given
// lines (from line 7 on, see container) and returns it with the
// diagnostics.
func loadContainer(t *testing.T, lines ...string) (*Recipe, hcl.Diagnostics) {
	t.Helper()
	dir := writeTree(t, map[string]string{
		"app/hello":  "#!/bin/sh\necho hello\n",
		"r.bake.hcl": container(lines...),
	})
	return NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), Options{})
}

func TestContainerCompression(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  Compression
	}{
		{nil, CompressionGzip},
		{[]string{`  compression = "gzip"`}, CompressionGzip},
		{[]string{`  compression = "zstd"`}, CompressionZstd},
	} {
		r, diags := loadContainer(t, tc.lines...)
		if diags.HasErrors() {
			t.Fatalf("%q: %s", tc.lines, diagText(diags))
		}
		if got := r.Containers[0].Compression; got != tc.want {
			t.Errorf("%q: compression %q, want %q", tc.lines, got, tc.want)
		}
	}

	// The compression decides the layers' bytes: it is in the bake key.
	gz, _ := loadContainer(t)
	zs, _ := loadContainer(t, `  compression = "zstd"`)
	a, b := string(Canonical(gz, gz.Containers[0])), string(Canonical(zs, zs.Containers[0]))
	if a == b {
		t.Errorf("Canonical does not depend on the compression: %s", a)
	}
	if !strings.Contains(b, `"compression":"zstd"`) {
		t.Errorf("Canonical does not name zstd: %s", b)
	}
	explicit, _ := loadContainer(t, `  compression = "gzip"`)
	if c := string(Canonical(explicit, explicit.Containers[0])); c != a {
		t.Errorf("compression = \"gzip\" and the default differ:\n%s\n%s", c, a)
	}
}

func TestContainerCompressionErrors(t *testing.T) {
	for _, tc := range []struct {
		line            string
		summary, detail string
		col             int
	}{
		{`  compression = "xz"`, `invalid compression "xz"`, `compression = "zstd"`, 17},
		{`  compression = "GZIP"`, `invalid compression "GZIP"`, `compression = "gzip"`, 17},
		{`  compression = ""`, `invalid compression ""`, `compression = "gzip"`, 17},
		{`  compression = 9`, `invalid type for "compression"`, `compression = "gzip"`, 17},
	} {
		r, diags := loadContainer(t, tc.line)
		if r != nil || len(diags) != 1 {
			t.Errorf("%s: recipe %v, %d diagnostics, want none and 1:\n%s", tc.line, r != nil, len(diags), diagText(diags))
			continue
		}
		d := diags[0]
		if !strings.Contains(d.Summary, tc.summary) || !strings.Contains(d.Detail, tc.detail) {
			t.Errorf("%s: got %q (%s), want %q saying %q", tc.line, d.Summary, d.Detail, tc.summary, tc.detail)
		}
		if d.Subject == nil || filepath.Base(d.Subject.Filename) != "r.bake.hcl" || d.Subject.Start.Line != 7 || d.Subject.Start.Column != tc.col {
			t.Errorf("%s: subject %v, want r.bake.hcl:7:%d", tc.line, d.Subject, tc.col)
		}
	}
}

func TestContainerSBOMSetting(t *testing.T) {
	for line, want := range map[string]bool{``: false, `  sbom = true`: false, `  sbom = false`: true} {
		r, diags := loadContainer(t, line)
		if diags.HasErrors() || r == nil {
			t.Fatalf("%q: %s", line, diagText(diags))
		}
		if got := r.Containers[0].NoSBOM; got != want {
			t.Errorf("%q: NoSBOM = %v, want %v", line, got, want)
		}
		if b := string(Canonical(r, r.Containers[0])); strings.Contains(b, "no_sbom") != want {
			t.Errorf("%q: canonical form %s: no_sbom must be there exactly when the SBOM is off (keys of other recipes stay as they were)", line, b)
		}
	}
	r, diags := loadContainer(t, `  sbom = "no"`)
	if r != nil || len(diags) != 1 || !strings.Contains(diags[0].Summary, `invalid type for "sbom"`) ||
		diags[0].Subject == nil || diags[0].Subject.Start.Line != 7 || diags[0].Subject.Start.Column != 10 {
		t.Errorf(`sbom = "no": recipe %v, diagnostics %s; want one at r.bake.hcl:7:10`, r != nil, diagText(diags))
	}
}
