package recipes

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const autoRecipe = `recipe "r" {
  version        = "auto"
  version_format = FORMAT
  stages         = ["dev"]
}
container "c" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`

func loadAuto(t *testing.T, format string, opts Options) (*Recipe, string) {
	t.Helper()
	src := autoRecipe
	if format == "" {
		src = strings.Replace(src, "  version_format = FORMAT\n", "", 1)
	} else {
		src = strings.Replace(src, "FORMAT", format, 1)
	}
	dir := writeTree(t, map[string]string{"r.bake.hcl": src, "app/a.txt": "a"})
	l := NewLoader()
	r, diags := l.Load(filepath.Join(dir, "r.bake.hcl"), opts)
	if diags.HasErrors() {
		return nil, diagText(diags)
	}
	return r, ""
}

func TestAutoVersionDecodes(t *testing.T) {
	r, errs := loadAuto(t, "", Options{})
	if errs != "" {
		t.Fatal(errs)
	}
	if r.VersionFixed() {
		t.Errorf("VersionFixed is true for version = \"auto\": outdated would warn that a new version needs an edit")
	}
	if !r.VersionAuto || r.Version != AutoVersion || r.VersionFormat != "" {
		t.Fatalf("VersionAuto=%v Version=%q VersionFormat=%q, want true, auto, empty", r.VersionAuto, r.Version, r.VersionFormat)
	}
	now := time.Date(2026, 11, 26, 23, 30, 0, 0, time.FixedZone("X", -5*3600)) // 2026-11-27 in UTC
	if got, want := r.NextAutoVersion(now, nil), "2026.11.27.1"; got != want {
		t.Errorf("first version = %q, want %q", got, want)
	}
	existing := []string{"2026.11.27.1", "2026.11.27.9", "2026.11.27.10", "2026.11.26.40", "1.0.0", "2026.11.27.x"}
	if got, want := r.NextAutoVersion(now, existing), "2026.11.27.11"; got != want {
		t.Errorf("next version = %q, want %q", got, want)
	}
	if !r.IsAutoVersion("2026.11.26.40") || r.IsAutoVersion("1.0.0x") {
		t.Errorf("IsAutoVersion does not tell the format's versions from others")
	}

	r, errs = loadAuto(t, `"{year}{month}{day}-{n}"`, Options{})
	if errs != "" {
		t.Fatal(errs)
	}
	if got, want := r.NextAutoVersion(now, []string{"20261127-2"}), "20261127-3"; got != want {
		t.Errorf("custom format: next version = %q, want %q", got, want)
	}
	r, errs = loadAuto(t, `"v{n}"`, Options{})
	if errs != "" {
		t.Fatal(errs)
	}
	if got, want := r.NextAutoVersion(now, []string{"v1", "v7", "2026.11.27.30"}), "v8"; got != want {
		t.Errorf("counter-only format: next version = %q, want %q", got, want)
	}
}

func TestAutoVersionErrors(t *testing.T) {
	for _, c := range []struct {
		name, format, want string
		opts               Options
	}{
		{name: "unknown placeholder", format: `"{date}.{hour}.{n}"`, want: `3:20: invalid version_format "{date}.{hour}.{n}": unknown placeholder {hour}`},
		{name: "no counter", format: `"{date}"`, want: `3:20: invalid version_format "{date}": it must hold {n}`},
		{name: "two counters", format: `"{n}.{n}"`, want: `3:20: invalid version_format "{n}.{n}": it must hold {n}`},
		{name: "bad character", format: `"{date}+{n}"`, want: `3:20: invalid version_format "{date}+{n}": besides placeholders`},
		{name: "stray brace", format: `"{date}.{n}}"`, want: `3:20: invalid version_format "{date}.{n}}": a brace`},
		{name: "auto with -var version", opts: Options{Vars: map[string]string{"version": "2.0.0"}},
			want: `2:20: version is "auto", and -var version=2.0.0 is given`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs := loadAuto(t, c.format, c.opts)
			if !strings.Contains(errs, "r.bake.hcl:"+c.want) {
				t.Fatalf("errors:\n%s\nwant one containing r.bake.hcl:%s", errs, c.want)
			}
			if n := strings.Count(errs, "\n"); n != 1 {
				t.Errorf("got %d errors, want 1:\n%s", n, errs)
			}
		})
	}

	dir := writeTree(t, map[string]string{"r.bake.hcl": strings.Replace(okRecipe, "  stages", "  version_format = \"{date}.{n}\"\n  stages", 1) + okImage})
	_, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), Options{})
	if errs := diagText(diags); !strings.Contains(errs, `r.bake.hcl:3:20: version_format without version = "auto"`) || len(diags) != 1 {
		t.Errorf("version_format with a fixed version: got\n%s", errs)
	}
}

// TestAutoVersionVarChoosesFixed checks that a recipe whose version
// comes from a variable defaulting to "auto" is auto-versioned, and takes
// a fixed version from -var without complaint.
func TestAutoVersionVarChoosesFixed(t *testing.T) {
	src := "variable \"version\" {\n  default = \"auto\"\n}\n" + strings.Replace(strings.Replace(autoRecipe, `"auto"`, "var.version", 1), "  version_format = FORMAT\n", "", 1)
	dir := writeTree(t, map[string]string{"r.bake.hcl": src, "app/a.txt": "a"})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
	if !r.VersionAuto {
		t.Errorf("default auto: VersionAuto = false")
	}
	r = mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{Vars: map[string]string{"version": "3.1.0"}})
	if r.VersionAuto || r.Version != "3.1.0" {
		t.Errorf("-var version=3.1.0: VersionAuto=%v Version=%q", r.VersionAuto, r.Version)
	}
}

// TestCanonicalLeavesOutAutoVersion checks that the canonical encodings
// of an auto-versioned recipe hold no version, whatever version it is
// assigned, and that a fixed version is encoded as the "version" field,
// so that fixed-version bake keys do not change.
func TestCanonicalLeavesOutAutoVersion(t *testing.T) {
	r, errs := loadAuto(t, "", Options{})
	if errs != "" {
		t.Fatal(errs)
	}
	c := r.Containers[0]
	m := &MachineImage{Name: "m", SourceAMI: "ami-0123456789abcdef0"}
	a, b := r.WithVersion("2026.11.27.1"), r.WithVersion("2026.11.27.2")
	if !bytes.Equal(Canonical(a, c), Canonical(b, c)) || !bytes.Equal(Canonical(a, c), Canonical(r, c)) {
		t.Errorf("auto recipe: Canonical depends on the assigned version:\n%s\n%s", Canonical(a, c), Canonical(b, c))
	}
	if !bytes.Equal(CanonicalMachineImage(a, m), CanonicalMachineImage(b, m)) {
		t.Errorf("auto recipe: CanonicalMachineImage depends on the assigned version")
	}
	for _, enc := range [][]byte{Canonical(a, c), CanonicalMachineImage(a, m)} {
		var doc map[string]any
		if err := json.Unmarshal(enc, &doc); err != nil {
			t.Fatal(err)
		}
		if _, ok := doc["version"]; ok {
			t.Errorf("auto recipe: canonical encoding holds a version: %s", enc)
		}
	}

	fixed := *r
	fixed.VersionAuto, fixed.Version = false, "1.4.2"
	for _, enc := range [][]byte{Canonical(&fixed, c), CanonicalMachineImage(&fixed, m)} {
		var doc struct {
			Name    string  `json:"name"`
			Version *string `json:"version"`
		}
		if err := json.Unmarshal(enc, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Version == nil || *doc.Version != "1.4.2" {
			t.Errorf("fixed recipe: canonical encoding lacks \"version\":\"1.4.2\": %s", enc)
		}
		if !strings.HasPrefix(string(enc), `{"name":"r","version":"1.4.2","stages":["dev"],`) {
			t.Errorf("fixed recipe: canonical encoding changed its layout: %s", enc)
		}
	}
}
