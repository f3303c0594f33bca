// Package distributiontest starts a real Docker Distribution registry
// (Debian's docker-registry, which scripts/deps.sh installs) for tests
// that must see how a stock registry behaves: it deletes a tag only with
// its manifest, and with deletes disabled deletes nothing.
package distributiontest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Binary is the registry's command name.
const Binary = "docker-registry"

// startTimeout bounds the wait for the registry to answer.
const startTimeout = 30 * time.Second

// Start runs a registry on a free loopback port, storing in a temporary
// folder, with manifest deletes enabled or not, stops it when the test
// ends, and returns its host:port. Without the binary the test fails when
// CI is set and is skipped otherwise.
func Start(t testing.TB, deletes bool) string {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		reason := Binary + " (Docker Distribution) is not installed: run scripts/deps.sh"
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s", reason)
		}
		t.Skip(reason)
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: %t\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), deletes, addr)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("%s exited: %v\n%s", bin, err, logs.String())
		case <-ctx.Done():
			t.Fatalf("%s did not answer on %s: %v\n%s", bin, addr, ctx.Err(), logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
