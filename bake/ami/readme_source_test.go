package ami_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/internal/progress"
)

// readmeSourceFilter returns the source_ami_filter block of the README's
// machine_image example, exactly as written there.
func readmeSourceFilter(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(src), "```hcl\nmachine_image \"web\" {\n")
	if !ok {
		t.Fatal("README.md has no machine_image \"web\" example")
	}
	example, _, _ = strings.Cut(example, "```")
	start := strings.Index(example, "  source_ami_filter {")
	if start < 0 {
		t.Fatal("the README's machine_image example has no source_ami_filter block")
	}
	block, _, ok := strings.Cut(example[start:], "\n  }\n")
	if !ok {
		t.Fatal("the README's source_ami_filter block does not end")
	}
	return block + "\n  }"
}

// infos records the Info lines of a bake.
type infos struct {
	mu    sync.Mutex
	lines []string
}

func (r *infos) Step(string) progress.Step { return progress.Discard().Step("") }
func (r *infos) Info(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, msg)
}

// TestREADMESourceFilterPicksPlainAL2023: the README's example filter,
// as written, picks the plain Amazon Linux 2023 image among moto's
// Amazon images in us-east-1 (not a minimal or ECS-optimized one, not
// another kernel or architecture), and the bake says which one it
// picked: id, name, owner and creation date.
func TestREADMESourceFilterPicksPlainAL2023(t *testing.T) {
	e := newBakeEnv(t)
	filter := readmeSourceFilter(t)
	r, m := bakeRecipe(t, "  region = \"us-east-1\"\n"+filter)
	rep := &infos{}
	p, err := e.baker(ami.WithProgress(rep)).Prepare(context.Background(), r, m)
	if err != nil {
		t.Fatalf("the README's filter:\n%s\nfails: %v", filter, err)
	}
	name := p.SourceAMIName
	if !strings.HasPrefix(name, "al2023-ami-2023.") || !strings.HasSuffix(name, "-kernel-6.1-x86_64") || strings.Contains(name, "ecs") || strings.Contains(name, "minimal") {
		t.Errorf("the README's filter picked %s %q, want a plain al2023-ami-2023.*-kernel-6.1-x86_64", p.SourceAMI, name)
	}
	// Which release wins depends on the creation dates moto makes up when
	// it loads its images (the same second for all, or not): moto is not
	// AWS. What matters is the kind of image the filter lets in.
	const amazon = "137112412989" // the account that owns Amazon Linux AMIs
	if p.SourceAMIOwner != amazon || p.SourceAMICreated == "" {
		t.Errorf("source owner %q created %q, want owner %s and a date", p.SourceAMIOwner, p.SourceAMICreated, amazon)
	}
	want := "server: source AMI " + p.SourceAMI + " " + name + ", owner " + amazon + ", created " + p.SourceAMICreated
	if len(rep.lines) != 1 || rep.lines[0] != want {
		t.Errorf("info lines = %q, want [%q]", rep.lines, want)
	}
}
