package cli

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

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// startDistribution starts Debian's Docker Distribution registry
// (docker-registry, installed by scripts/deps.sh) on a free loopback port,
// storing in a temporary folder, with manifest deletes enabled or not, and
// returns its host:port. Without it the test fails under CI and is
// skipped elsewhere.
func startDistribution(t *testing.T, deletes bool) string {
	t.Helper()
	bin := requireTool(t, "docker-registry")
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "config.yml")
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: %t\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), deletes, addr)
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

// TestRevokeOnDockerDistribution is the release manager's revoke on a
// stock Docker Distribution registry, with deletes disabled and enabled:
// after `bakery revoke`, no stage tag serves the image, `status` shows it
// in no stage, and a revocation that stopped half way (the revocation
// recorded, a stage tag still on the image, as an older bakery left it)
// is finished by running the same command again instead of "already
// revoked".
func TestRevokeOnDockerDistribution(t *testing.T) {
	for _, deletes := range []bool{false, true} {
		t.Run(fmt.Sprintf("deletes=%t", deletes), func(t *testing.T) {
			noDockerConfig(t)
			host := startDistribution(t, deletes)
			recipe := stagedRecipe(t, host+"/team/hello", `
stage "prod" {
  repository = "`+host+`/prod/hello"
}
`)
			env := []string{"BAKERY_HOME=" + t.TempDir(), "BAKERY_ACTOR=rm"}
			digest := bakeJSON(t, env, recipe).Artifacts[0].Digest
			for _, stage := range []string{"dev", "staging", "prod"} {
				mustRun(t, env, "promote", "hello@1.0.0", "--to", stage, "-f", recipe)
			}
			tags := []string{host + "/team/hello:dev", host + "/team/hello:staging", host + "/prod/hello:prod"}
			headOf := func(ref string) string {
				r, err := name.ParseReference(ref)
				if err != nil {
					t.Fatal(err)
				}
				d, err := remote.Head(r)
				if err != nil {
					return "error: " + err.Error()
				}
				return d.Digest.String()
			}
			mustRun(t, env, "revoke", "hello@1.0.0", "--reason", "CVE-2026-1", "-f", recipe)
			for _, ref := range tags {
				if got := headOf(ref); got == digest {
					t.Errorf("%s still serves the revoked %s", ref, digest)
				}
			}
			checkNoStages := func(when string) {
				t.Helper()
				st := statusOf(t, env, recipe)
				for _, stage := range []string{"dev", "staging", "prod"} {
					if got := inStage(st, stage); len(got) != 0 {
						t.Errorf("%s: status shows %v in %s", when, got, stage)
					}
				}
				if len(st.Versions) != 1 || !st.Versions[0].Revoked {
					t.Errorf("%s: status versions %+v, want 1.0.0 revoked", when, st.Versions)
				}
			}
			checkNoStages("after revoke")

			// Half done: the tag back on the revoked image.
			ref, _ := name.ParseReference(host + "/team/hello:1.0.0")
			desc, err := remote.Get(ref)
			if err != nil {
				t.Fatal(err)
			}
			devRef, _ := name.ParseReference(tags[0])
			if err := remote.Put(devRef, desc); err != nil {
				t.Fatal(err)
			}
			r := mustRun(t, env, "revoke", "hello@1.0.0", "--reason", "CVE-2026-1", "-f", recipe)
			if strings.Contains(r.stdout, "already revoked") {
				t.Errorf("revoke with dev still on the image said %q", r.stdout)
			}
			if got := headOf(tags[0]); got == digest {
				t.Errorf("running revoke again left %s on the revoked image", tags[0])
			}
			checkNoStages("after revoking again")
			if r := mustRun(t, env, "revoke", "hello@1.0.0", "--reason", "CVE-2026-1", "-f", recipe); !strings.Contains(r.stdout, "already revoked") {
				t.Errorf("third revoke: %q, want already revoked", r.stdout)
			}
		})
	}
}
