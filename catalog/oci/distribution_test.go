package oci

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

// distributionBinary is Debian's Docker Distribution registry
// (scripts/deps.sh installs it).
const distributionBinary = "docker-registry"

// startDistribution starts a real Docker Distribution registry on a free
// loopback port, storing in a temporary directory, with manifest deletes
// enabled or not, and returns its host:port. Without the binary the test
// skips, or fails when CI is set.
func startDistribution(t *testing.T, deletes bool) string {
	t.Helper()
	bin, err := exec.LookPath(distributionBinary)
	if err != nil {
		needPeer(t, "docker-registry (Docker Distribution) is not installed: run scripts/deps.sh")
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: %t
http:
  addr: %s
`, filepath.Join(dir, "data"), deletes, addr)
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
