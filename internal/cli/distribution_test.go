package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/internal/distributiontest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// startDistribution starts a Docker Distribution registry (see
// distributiontest.Start) and returns its host:port.
func startDistribution(t *testing.T, deletes bool) string {
	t.Helper()
	return distributiontest.Start(t, deletes)
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
