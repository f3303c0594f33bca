package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const ggcrModule = "github.com/google/go-containerregistry"

// moduleRoot returns the directory holding the go.mod of the current module.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locating go.mod with 'go env GOMOD': %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run the benchmark from the bakery checkout (make bench)")
	}
	return filepath.Dir(gomod), nil
}

// requiredVersion returns the version of module required by the go.mod at gomod.
func requiredVersion(gomod, module string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "require ")
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == module && strings.HasPrefix(fields[1], "v") {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s does not require %s", gomod, module)
}

// goCmd runs the go command in dir with extra environment, returning combined output on failure.
func goCmd(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = mergeEnv(os.Environ(), env)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// buildBakery builds ./cmd/bakery of the module at root into dst.
func buildBakery(ctx context.Context, root, dst string) error {
	if err := goCmd(ctx, root, nil, "build", "-o", dst, "./cmd/bakery"); err != nil {
		return fmt.Errorf("building bakery: %w", err)
	}
	return nil
}

// ensureCrane installs crane at version into bin unless a crane reporting that
// version is already there, and returns its path.
func ensureCrane(ctx context.Context, root, bin, version string) (string, error) {
	p := filepath.Join(bin, "crane")
	if out, err := exec.CommandContext(ctx, p, "version").Output(); err == nil && strings.TrimSpace(string(out)) == version {
		return p, nil
	}
	pkg := ggcrModule + "/cmd/crane@" + version
	if err := goCmd(ctx, root, []string{"GOBIN=" + bin}, "install", pkg); err != nil {
		return "", fmt.Errorf("installing crane %s: %w", version, err)
	}
	out, err := exec.CommandContext(ctx, p, "version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s version: %w", p, err)
	}
	if got := strings.TrimSpace(string(out)); got != version {
		return "", fmt.Errorf("%s reports version %q, want %s", p, got, version)
	}
	return p, nil
}

// gitRevision describes HEAD of the checkout at root, or "" when unknown.
func gitRevision(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	cmd = exec.CommandContext(ctx, "git", "status", "--porcelain")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		rev += "+dirty"
	}
	return rev
}
