package recipes

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const fullDir = "../testdata/recipes/full"

// issueRecipe is the minimal recipe from the project's issue, verbatim.
const issueRecipe = `variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "hello" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}
container "hello" {
  base       = "scratch"
  repository = "127.0.0.1:5000/team/hello"   # omit for the local default
  layer {
    source      = "app/"
    destination = "/app/"
  }
  entrypoint = ["/app/hello"]
}
`

// TestExampleRecipesAreValid loads every example recipe shipped in this
// folder: they are documentation and must keep working.
func TestExampleRecipesAreValid(t *testing.T) {
	paths, err := filepath.Glob("*.bake.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no example recipes (*.bake.hcl) in recipes/")
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			r := mustLoad(t, p, Options{})
			if r.Name == "" || r.Version == "" || len(r.Stages) == 0 {
				t.Errorf("incomplete recipe: %+v", r)
			}
		})
	}
}

func TestHelloExample(t *testing.T) {
	r := mustLoad(t, "hello.bake.hcl", Options{})
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "hello" || r.Version != "1.0.0" || !slices.Equal(r.Stages, []string{"dev", "staging", "prod"}) {
		t.Errorf("recipe = %q %q %q", r.Name, r.Version, r.Stages)
	}
	if r.File != filepath.Join(dir, "hello.bake.hcl") || r.Dir != dir {
		t.Errorf("File, Dir = %s, %s; want absolute paths in %s", r.File, r.Dir, dir)
	}
	if len(r.Containers) != 1 {
		t.Fatalf("got %d containers, want 1", len(r.Containers))
	}
	c := r.Containers[0]
	if c.Name != "hello" || c.Base != "scratch" || c.BaseKind != BaseScratch || c.Repository != "" {
		t.Errorf("container = %q base %q (%s) repository %q", c.Name, c.Base, c.BaseKind, c.Repository)
	}
	if !slices.Equal(c.Entrypoint, []string{"/app/hello"}) {
		t.Errorf("entrypoint = %q", c.Entrypoint)
	}
	want := &Layer{Source: "app/", Path: filepath.Join(dir, "app"), Kind: SourceDir, Destination: "/app/"}
	if len(c.Layers) != 1 {
		t.Fatalf("got %d layers, want 1", len(c.Layers))
	}
	got := *c.Layers[0]
	got.DeclRange, got.SourceRange = want.DeclRange, want.SourceRange
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("layer = %+v, want %+v", got, *want)
	}

	fi, err := os.Stat(filepath.Join("app", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("app/hello mode = %v, want 0755", fi.Mode().Perm())
	}
}

func TestIssueRecipeAsWritten(t *testing.T) {
	dir := writeTree(t, map[string]string{"hello.bake.hcl": issueRecipe, "app/hello": "#!/bin/sh\necho hello\n"})
	r := mustLoad(t, filepath.Join(dir, "hello.bake.hcl"), Options{})
	if got := r.Containers[0].Repository; got != "127.0.0.1:5000/team/hello" {
		t.Errorf("repository = %q", got)
	}
	if r.Version != "1.0.0" {
		t.Errorf("version = %q", r.Version)
	}
}

func TestHelloVersionFromVar(t *testing.T) {
	r := mustLoad(t, "hello.bake.hcl", Options{Vars: map[string]string{"version": "1.1.0"}})
	if r.Version != "1.1.0" {
		t.Errorf("version = %q, want 1.1.0", r.Version)
	}
}

// TestVariablePrecedence: default < BAKERY_VAR_ < -var-file (in order) < -var.
func TestVariablePrecedence(t *testing.T) {
	src := `variable "v" {
  type    = string
  default = "default"
}
recipe "r" {
  version = var.v
  stages  = ["dev"]
}
` + okImage
	dir := writeTree(t, map[string]string{
		"r.bake.hcl":  src,
		"a.vars.hcl":  `v = "file-a"`,
		"b.vars.json": `{"v": "file-b"}`,
		"other.hcl":   "# sets nothing\n",
	})
	a, b, other := filepath.Join(dir, "a.vars.hcl"), filepath.Join(dir, "b.vars.json"), filepath.Join(dir, "other.hcl")
	env := []string{"HOME=/root", "BAKERY_VAR_v=env", "BAKERY_VAR_undeclared=ignored"}
	for _, c := range []struct {
		name string
		opts Options
		want string
	}{
		{"default", Options{}, "default"},
		{"environment over default", Options{Env: env}, "env"},
		{"var file over environment", Options{Env: env, VarFiles: []string{a}}, "file-a"},
		{"later var file over earlier", Options{Env: env, VarFiles: []string{a, b}}, "file-b"},
		{"var file order", Options{Env: env, VarFiles: []string{b, a, other}}, "file-a"},
		{"-var over everything", Options{Env: env, VarFiles: []string{a, b}, Vars: map[string]string{"v": "cli"}}, "cli"},
		{"-var alone", Options{Vars: map[string]string{"v": "cli"}}, "cli"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), c.opts)
			if r.Version != c.want {
				t.Errorf("version = %q, want %q", r.Version, c.want)
			}
		})
	}
}

// TestVariableTypes: raw -var and environment values become the declared
// type; var files give typed values directly.
func TestVariableTypes(t *testing.T) {
	src := `variable "stages" {
  type = list(string)
}
variable "n" {
  type = number
}
variable "on" {
  type = bool
}
variable "tags" {
  type    = map(string)
  default = {}
}
variable "svc" {
  type = object({
    name = string
    port = optional(number, 80)
  })
  default = { name = "web" }
}
variable "anything" {
  default = "x"
}
recipe "r" {
  version     = "1.0.0"
  stages      = var.stages
  description = format("%s-%d-%s-%s-%d-%s", var.anything, var.n, var.on ? "on" : "off", lookup(var.tags, "t", "none"), var.svc.port, var.svc.name)
}
` + okImage
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{
		Vars: map[string]string{
			"stages":   `["dev", "prod"]`,
			"on":       "true",
			"tags":     `{ t = "tagged" }`,
			"anything": "[not parsed]",
		},
		Env: []string{"BAKERY_VAR_n=42"},
	})
	if want := "[not parsed]-42-on-tagged-80-web"; r.Description != want {
		t.Errorf("description = %q, want %q", r.Description, want)
	}
	if !slices.Equal(r.Stages, []string{"dev", "prod"}) {
		t.Errorf("stages = %q", r.Stages)
	}
}

func TestLocalsAndFunctions(t *testing.T) {
	src := `variable "name" {
  default = "World"
}
locals {
  greeting = format("Hello, %s!", local.who)
  digest   = sha256(local.greeting)
}
locals {
  who   = upper(var.name)
  parts = split(",", "a,b,c")
}
recipe "r" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "c" {
  base = "scratch"
  layer {
    source      = "files/"
    destination = "/"
  }
  env = {
    GREETING = local.greeting
    DIGEST   = local.digest
    JOINED   = join("-", local.parts)
    MOTD     = trimspace(file("files/motd"))
    HAS_MOTD = fileexists("files/motd")
    NO_FILE  = fileexists("files/nope")
    BASE     = basename("files/motd")
    DIRNAME  = dirname("files/motd")
    ABS      = abspath("files")
    HOME     = env("HOME")
    UNSET    = env("NOT_SET")
    BUILT    = timestamp()
    DAY      = formatdate("YYYY-MM-DD", timestamp())
    LEN      = length("héllo") + length(local.parts)
    MD5      = md5("")
    SHA1     = sha1("")
    B64      = base64encode("hi")
    JSON     = jsonencode({ a = [1, true] })
    TRY      = try(local.parts[7], "fallback")
    COALESCE = coalesce("", "second")
    MAX      = max(3, 9, 4)
  }
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src, "files/motd": "  welcome  \n"})
	// Load from another working directory: file() and fileexists() resolve
	// against the recipe's folder, not the process's.
	t.Chdir(t.TempDir())
	now := time.Date(2024, 6, 1, 12, 30, 0, 0, time.FixedZone("CEST", 2*60*60))
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{
		Env: []string{"HOME=/home/baker"},
		Now: func() time.Time { return now },
	})
	want := map[string]string{
		"GREETING": "Hello, WORLD!",
		"DIGEST":   sha256Hex("Hello, WORLD!"),
		"JOINED":   "a-b-c",
		"MOTD":     "welcome",
		"HAS_MOTD": "true",
		"NO_FILE":  "false",
		"BASE":     "motd",
		"DIRNAME":  "files",
		"ABS":      filepath.Join(dir, "files"),
		"HOME":     "/home/baker",
		"UNSET":    "",
		"BUILT":    "2024-06-01T10:30:00Z",
		"DAY":      "2024-06-01",
		"LEN":      "8",
		"MD5":      "d41d8cd98f00b204e9800998ecf8427e",
		"SHA1":     "da39a3ee5e6b4b0d3255bfef95601890afd80709",
		"B64":      "aGk=",
		"JSON":     `{"a":[1,true]}`,
		"TRY":      "fallback",
		"COALESCE": "second",
		"MAX":      "9",
	}
	got := r.Containers[0].Env
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("env has %d entries, want %d: %v", len(got), len(want), got)
	}
}

func TestFunctionNames(t *testing.T) {
	names := FunctionNames()
	for _, want := range []string{"format", "formatlist", "join", "split", "lower", "upper", "trimspace", "replace", "regex", "concat", "length", "merge", "keys", "values", "lookup", "element", "contains", "coalesce", "min", "max", "abs", "tostring", "tonumber", "tobool", "tolist", "tomap", "jsonencode", "jsondecode", "file", "fileexists", "abspath", "basename", "dirname", "sha256", "sha1", "md5", "base64encode", "base64decode", "env", "timestamp", "formatdate"} {
		if !slices.Contains(names, want) {
			t.Errorf("function %s is missing", want)
		}
	}
	if slices.Contains(names, "uuidv4") {
		t.Error("uuidv4 is available; it must not be: a recipe evaluates the same on every run")
	}
	if !slices.IsSorted(names) {
		t.Error("FunctionNames is not sorted")
	}
}

// TestFullFixture loads the fixture that uses every feature, with a var
// file of each syntax, and checks every evaluated field.
func TestFullFixture(t *testing.T) {
	dir, err := filepath.Abs(fullDir)
	if err != nil {
		t.Fatal(err)
	}
	r := mustLoad(t, filepath.Join(fullDir, "full.bake.hcl"), Options{
		VarFiles: []string{filepath.Join(fullDir, "prod.vars.hcl"), filepath.Join(fullDir, "port.vars.json")},
	})
	if r.Name != "full" || r.Version != "1.4.3" || !slices.Equal(r.Stages, []string{"dev", "staging", "prod"}) ||
		r.Description != "release notes for the full fixture" {
		t.Errorf("recipe = %q %q %q %q", r.Name, r.Version, r.Stages, r.Description)
	}
	if len(r.Containers) != 2 {
		t.Fatalf("got %d containers, want 2", len(r.Containers))
	}
	web, tools := r.Containers[0], r.Containers[1]

	if web.Base != "oci:./layout:base" || web.BaseKind != BaseLayout ||
		web.BaseLayoutPath != filepath.Join(dir, "layout") || web.BaseLayoutRef != "base" {
		t.Errorf("web base = %q %s %q %q", web.Base, web.BaseKind, web.BaseLayoutPath, web.BaseLayoutRef)
	}
	if web.Repository != "127.0.0.1:5000/team/web" {
		t.Errorf("web repository = %q", web.Repository)
	}
	u := func(v uint32) *uint32 { return &v }
	i := func(v int) *int { return &v }
	wantLayers := []Layer{
		{Source: "app/", Path: filepath.Join(dir, "app"), Kind: SourceDir, Destination: "/app/", Mode: u(0o755), UID: i(1000), GID: i(1000)},
		{Source: "app/config.toml", Path: filepath.Join(dir, "app", "config.toml"), Kind: SourceFile, Destination: "/etc/web/", Mode: u(0o644)},
		{Source: "rootfs.tar", Path: filepath.Join(dir, "rootfs.tar"), Kind: SourceTarball, Destination: "/"},
	}
	if len(web.Layers) != len(wantLayers) {
		t.Fatalf("web has %d layers, want %d", len(web.Layers), len(wantLayers))
	}
	for k, l := range web.Layers {
		got := *l
		got.DeclRange, got.SourceRange = hclRangeZero, hclRangeZero
		if !reflect.DeepEqual(got, wantLayers[k]) {
			t.Errorf("layer %d = %+v, want %+v", k, got, wantLayers[k])
		}
	}
	if l := web.Layers[0]; l.SourceRange.Start.Line != 57 || l.SourceRange.Start.Column != 19 {
		t.Errorf("layer 0 SourceRange = %s, want line 57, column 19", posString(l.SourceRange))
	}
	wantEnv := map[string]string{"VERSION": "v1.4.3", "NOTES_SHA": sha256Hex("release notes for the full fixture\n"), "PORT": "9090"}
	if !reflect.DeepEqual(web.Env, wantEnv) {
		t.Errorf("web env = %v, want %v", web.Env, wantEnv)
	}
	if !slices.Equal(web.Entrypoint, []string{"/app/hello"}) || !slices.Equal(web.Cmd, []string{"--listen", ":9090"}) {
		t.Errorf("web entrypoint, cmd = %q, %q", web.Entrypoint, web.Cmd)
	}
	if web.Workdir != "/app" || web.User != "1000:1000" {
		t.Errorf("web workdir, user = %q, %q", web.Workdir, web.User)
	}
	wantLabels := map[string]string{"org.opencontainers.image.title": "web", "org.example.env": "prod"}
	if !reflect.DeepEqual(web.Labels, wantLabels) {
		t.Errorf("web labels = %v", web.Labels)
	}
	if !slices.Equal(web.ExposedPorts, []string{"9090/tcp", "53/udp"}) {
		t.Errorf("web ports = %q", web.ExposedPorts)
	}
	if !slices.Equal(web.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("web platforms = %q", web.Platforms)
	}

	if tools.Base != "alpine:3.20" || tools.BaseKind != BaseRegistry || tools.BaseLayoutPath != "" {
		t.Errorf("tools base = %q %s %q", tools.Base, tools.BaseKind, tools.BaseLayoutPath)
	}
	if len(tools.Layers) != 1 || tools.Layers[0].Kind != SourceFile || tools.Layers[0].Path != filepath.Join(dir, "app", "hello") {
		t.Errorf("tools layers = %+v", tools.Layers)
	}
	if !slices.Equal(tools.Platforms, []string{"linux/arm/v7"}) {
		t.Errorf("tools platforms = %q", tools.Platforms)
	}

	golden, err := os.ReadFile(filepath.Join(fullDir, "web.canonical.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := Canonical(r, web); !bytes.Equal(got, bytes.TrimSpace(golden)) {
		t.Errorf("Canonical(web) differs from %s/web.canonical.json; got:\n%s", fullDir, got)
	}
}

// TestCanonicalIndependentOfLocation: the same recipe gives the same
// Canonical bytes whatever the working directory and wherever the
// checkout lives, and none of it names an absolute path.
func TestCanonicalIndependentOfLocation(t *testing.T) {
	pkgDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	// Two copies of the full fixture, in different places.
	copies := []string{copyTree(t, fullDir, filepath.Join(t.TempDir(), "one")), copyTree(t, fullDir, filepath.Join(t.TempDir(), "deeper", "two"))}
	var first [][]byte
	for n, dir := range copies {
		for _, wd := range []string{dir, filepath.Dir(dir), t.TempDir()} {
			t.Chdir(wd)
			rel, err := filepath.Rel(wd, filepath.Join(dir, "full.bake.hcl"))
			if err != nil {
				t.Fatal(err)
			}
			r := mustLoad(t, rel, Options{})
			var got [][]byte
			for _, c := range r.Containers {
				b := Canonical(r, c)
				if bytes.Contains(b, []byte(dir)) || bytes.Contains(b, []byte(wd)) {
					t.Errorf("Canonical names an absolute path: %s", b)
				}
				got = append(got, b)
			}
			if r.Dir != dir {
				t.Errorf("Dir = %s, want %s", r.Dir, dir)
			}
			if first == nil {
				first = got
				continue
			}
			if !reflect.DeepEqual(got, first) {
				t.Errorf("copy %d loaded from %s: Canonical differs:\n%s\nvs\n%s", n, wd, got, first)
			}
		}
	}

	// And the example, from the package folder and from the module root.
	t.Chdir(pkgDir)
	r1 := mustLoad(t, "hello.bake.hcl", Options{})
	t.Chdir("..")
	r2 := mustLoad(t, filepath.Join("recipes", "hello.bake.hcl"), Options{})
	if a, b := Canonical(r1, r1.Containers[0]), Canonical(r2, r2.Containers[0]); !bytes.Equal(a, b) {
		t.Errorf("hello Canonical depends on the working directory:\n%s\n%s", a, b)
	}
	if r1.Containers[0].Layers[0].Path != r2.Containers[0].Layers[0].Path {
		t.Errorf("layer paths differ: %s, %s", r1.Containers[0].Layers[0].Path, r2.Containers[0].Layers[0].Path)
	}
	// The description is not part of the bake key.
	r2.Description = "changed"
	if !bytes.Equal(Canonical(r1, r1.Containers[0]), Canonical(r2, r2.Containers[0])) {
		t.Error("Canonical depends on the description")
	}
	if got := string(Canonical(r1, nil)); got != `{"name":"hello","version":"1.0.0","stages":["dev","staging","prod"]}` {
		t.Errorf("Canonical(r, nil) = %s", got)
	}
}

func TestSensitiveValuesAreNotPrinted(t *testing.T) {
	src := `variable "token" {
  default   = "hunter2"
  sensitive = true
}
recipe "r" {
  version = format("%d", var.token)
  stages  = ["dev"]
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	l := NewLoader()
	_, diags := l.Load(filepath.Join(dir, "r.bake.hcl"), Options{})
	if !diags.HasErrors() {
		t.Fatal("no error")
	}
	var buf bytes.Buffer
	if err := l.WriteDiagnostics(&buf, diags, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("a sensitive value is printed:\n%s", buf.String())
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, diags := NewLoader().Load(filepath.Join(t.TempDir(), "nope.bake.hcl"), Options{})
	if !diags.HasErrors() || !strings.Contains(diags[0].Summary, "reading recipe file") {
		t.Errorf("diags = %s", diagText(diags))
	}
}

// copyTree copies the regular files and folders under src to dst.
func copyTree(t *testing.T, src, dst string) string {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestSourceBaseAndValueForms covers the accepted spellings of layer
// sources, bases, modes and ports.
func TestSourceBaseAndValueForms(t *testing.T) {
	files := map[string]string{
		"app/hello":            "x",
		"root.tar.gz":          "not really gzip: only the name decides the kind",
		"root.tgz":             "x",
		"base/oci-layout":      `{"imageLayoutVersion":"1.0.0"}`,
		"sub/index/oci-layout": `{"imageLayoutVersion":"1.0.0"}`,
		"shared/etc/app.conf":  "x",
	}
	dir := writeTree(t, files)
	u := func(v uint32) *uint32 { return &v }
	for _, c := range []struct {
		name      string
		container string // the body of container "c", after base
		base      string
		check     func(t *testing.T, c *Container)
	}{
		{name: "gzipped tarball", base: "scratch", container: `layer {
    source      = "../root.tar.gz"
    destination = "/"
  }`, check: func(t *testing.T, c *Container) {
			if l := c.Layers[0]; l.Kind != SourceTarball || l.Path != filepath.Join(dir, "root.tar.gz") || l.Source != "../root.tar.gz" {
				t.Errorf("layer = %+v", l)
			}
		}},
		{name: "tgz and an absolute source", base: "scratch", container: `layer {
    source      = "` + filepath.ToSlash(filepath.Join(dir, "root.tgz")) + `"
    destination = "/"
  }
  layer {
    source      = "` + filepath.ToSlash(filepath.Join(dir, "shared")) + `/"
    destination = "/srv/"
  }`, check: func(t *testing.T, c *Container) {
			if l := c.Layers[0]; l.Kind != SourceTarball || l.Path != filepath.Join(dir, "root.tgz") {
				t.Errorf("layer 0 = %+v", l)
			}
			if l := c.Layers[1]; l.Kind != SourceDir || l.Path != filepath.Join(dir, "shared") {
				t.Errorf("layer 1 = %+v", l)
			}
		}},
		{name: "modes", base: "scratch", container: `layer {
    source      = "../app/hello"
    destination = "/a"
    mode        = 755
  }
  layer {
    source      = "../app/hello"
    destination = "/b"
    mode        = "0o600"
  }
  layer {
    source      = "../app/hello"
    destination = "/c"
    mode        = "4755"
  }`, check: func(t *testing.T, c *Container) {
			for i, want := range []*uint32{u(0o755), u(0o600), u(0o4755)} {
				if got := c.Layers[i].Mode; got == nil || *got != *want {
					t.Errorf("layer %d mode = %v, want %o", i, got, *want)
				}
			}
		}},
		{name: "ports", base: "scratch", container: `exposed_ports = [80, "443", "53/udp", "9/sctp"]
  layer {
    source      = "../app/"
    destination = "/"
  }`, check: func(t *testing.T, c *Container) {
			if !slices.Equal(c.ExposedPorts, []string{"80/tcp", "443/tcp", "53/udp", "9/sctp"}) {
				t.Errorf("ports = %q", c.ExposedPorts)
			}
		}},
		{name: "layout by relative path", base: "./index", container: `layer {
    source      = "../app/"
    destination = "/"
  }`, check: func(t *testing.T, c *Container) {
			if c.BaseKind != BaseLayout || c.BaseLayoutPath != filepath.Join(dir, "sub", "index") || c.BaseLayoutRef != "" {
				t.Errorf("base = %s %q %q", c.BaseKind, c.BaseLayoutPath, c.BaseLayoutRef)
			}
		}},
		{name: "layout by relative path with a ref", base: "./index:v1", container: `layer {
    source      = "../app/"
    destination = "/"
  }`, check: func(t *testing.T, c *Container) {
			if c.BaseKind != BaseLayout || c.BaseLayoutPath != filepath.Join(dir, "sub", "index") || c.BaseLayoutRef != "v1" {
				t.Errorf("base = %s %q %q", c.BaseKind, c.BaseLayoutPath, c.BaseLayoutRef)
			}
		}},
		{name: "platform with an OS version", base: "scratch", container: `platforms = ["windows/amd64:10.0.17763.1", "linux/arm/v7"]
  layer {
    source      = "../app/"
    destination = "/"
  }`, check: func(t *testing.T, c *Container) {
			if !slices.Equal(c.Platforms, []string{"windows/amd64:10.0.17763.1", "linux/arm/v7"}) {
				t.Errorf("platforms = %q", c.Platforms)
			}
		}},
		{name: "layout with a digest ref", base: "oci:../base:sha256:" + strings.Repeat("a", 64), container: `layer {
    source      = "../app/"
    destination = "/"
  }`, check: func(t *testing.T, c *Container) {
			if c.BaseKind != BaseLayout || c.BaseLayoutPath != filepath.Join(dir, "base") || c.BaseLayoutRef != "sha256:"+strings.Repeat("a", 64) {
				t.Errorf("base = %s %q %q", c.BaseKind, c.BaseLayoutPath, c.BaseLayoutRef)
			}
		}},
		{name: "registry digest reference", base: "ghcr.io/org/img@sha256:" + strings.Repeat("b", 64), container: `layer {
    source      = "../app/"
    destination = "/"
  }`, check: func(t *testing.T, c *Container) {
			if c.BaseKind != BaseRegistry {
				t.Errorf("base kind = %s", c.BaseKind)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := okRecipe + "container \"c\" {\n  base = \"" + c.base + "\"\n  " + c.container + "\n}\n"
			p := filepath.Join(dir, "sub", "r.bake.hcl")
			if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			l := NewLoader()
			r, diags := l.Load(p, Options{})
			if diags.HasErrors() {
				t.Fatalf("diags:\n%s", diagText(diags))
			}
			c.check(t, r.Containers[0])
			if _, ok := l.Files()[p]; !ok {
				t.Errorf("Files() lacks %s", p)
			}
		})
	}
}
