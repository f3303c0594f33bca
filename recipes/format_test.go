package recipes

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{
			name: "indentation and alignment",
			in: `recipe "r" {
version="1.0.0"
      stages = ["dev","prod"]
}
container "c" {
base = "scratch"
layer {
source = "app/"
      destination = "/app/"
}
}
`,
			want: `recipe "r" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}
container "c" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`,
		},
		{
			name: "already formatted",
			in:   "variable \"v\" {\n  type    = string\n  default = \"x\"\n}\n",
			want: "variable \"v\" {\n  type    = string\n  default = \"x\"\n}\n",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Format([]byte(c.in))
			if string(got) != c.want {
				t.Errorf("Format:\n%s\nwant:\n%s", got, c.want)
			}
			if again := Format(got); !bytes.Equal(again, got) {
				t.Errorf("Format is not idempotent:\n%s\nthen:\n%s", got, again)
			}
		})
	}
}

// TestFormatIdempotentOnExamples: formatting every example and fixture
// twice gives the same bytes as formatting once, and the examples and the
// full fixture are already in canonical form (`bakery fmt -check recipes`
// passes).
func TestFormatIdempotentOnExamples(t *testing.T) {
	paths, _ := filepath.Glob("*.bake.hcl")
	more, _ := filepath.Glob(filepath.Join(fullDir, "*.hcl"))
	for _, p := range append(paths, more...) {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		once := Format(src)
		if twice := Format(once); !bytes.Equal(once, twice) {
			t.Errorf("%s: Format is not idempotent", p)
		}
		if !bytes.Equal(once, src) {
			t.Errorf("%s is not formatted; formatted it reads:\n%s", p, once)
		}
	}
}

func TestWriteDiagnostics(t *testing.T) {
	src := okRecipe + `container "c" {
  base = "Not A Ref!"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
	dir := writeTree(t, map[string]string{"file.bake.hcl": src, "app/x": ""})
	t.Chdir(dir) // diagnostics name files by the path as given
	l := NewLoader()
	_, diags := l.Load("file.bake.hcl", Options{
		Vars:     map[string]string{"count": "abc"},
		VarFiles: []string{"missing.vars.hcl"},
	})
	if len(diags) != 3 {
		t.Fatalf("got %d diagnostics, want 3:\n%s", len(diags), diagText(diags))
	}

	var buf bytes.Buffer
	if err := l.WriteDiagnostics(&buf, diags, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		// position, severity and summary on one line
		"file.bake.hcl:6:10: Error: invalid base image reference\n",
		// the snippet, with its line number
		"  on file.bake.hcl line 6, in container \"c\":\n   6:   base = \"Not A Ref!\"\n",
		// the detail saying what to do
		"Use \"scratch\", a registry reference",
		// an undeclared -var shows its value as the snippet
		"<-var count>:1:1: Error: undeclared variable \"count\"\n",
		"   1: abc\n",
		// a diagnostic without a position has no prefix
		"\nError: reading var file: open missing.vars.hcl: no such file or directory\n",
	} {
		if !strings.Contains("\n"+out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("color escapes without color:\n%s", out)
	}

	buf.Reset()
	if err := l.WriteDiagnostics(&buf, diags, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\x1b[31mError\x1b[0m: invalid base image reference") ||
		!strings.Contains(buf.String(), "base = \x1b[1;4m\"Not A Ref!\"\x1b[0m") {
		t.Errorf("color output lacks the red severity or the highlighted range:\n%q", buf.String())
	}
}
