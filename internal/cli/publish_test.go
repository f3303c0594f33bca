package cli

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPromotePublishesLocalBakeToStageRepository: bake into the local
// layout (as CI does), and the stage with a repository gets the image on
// promotion: REPO:VERSION and REPO:STAGE; status sees it there; revoke
// takes it out of that stage too.
func TestPromotePublishesLocalBakeToStageRepository(t *testing.T) {
	noDockerConfig(t)
	host := referrersRegistry(t, nil)
	recipe := stagedRecipe(t, "", `
stage "prod" {
  repository = "`+host+`/prod/hello"
}
`)
	env := []string{"BAKERY_HOME=" + t.TempDir(), "BAKERY_ACTOR=ci"}
	digest := bakeJSON(t, env, recipe).Artifacts[0].Digest
	for _, stage := range []string{"dev", "staging", "prod"} {
		mustRun(t, env, "promote", "hello@1.0.0", "--to", stage, "-f", recipe)
	}
	head := func(tag string) string {
		ref, err := name.ParseReference(host + "/prod/hello:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(ref)
		if err != nil {
			return "error: " + err.Error()
		}
		return d.Digest.String()
	}
	for _, tag := range []string{"1.0.0", "prod"} {
		if got := head(tag); got != digest {
			t.Errorf("prod/hello:%s = %s, want the baked %s", tag, got, digest)
		}
	}
	if got := inStage(statusOf(t, env, recipe), "prod"); len(got) != 1 || got[0] != "1.0.0" {
		t.Errorf("status: prod holds %v, want 1.0.0", got)
	}

	mustRun(t, env, "revoke", "hello@1.0.0", "--reason", "CVE-2026-7", "-f", recipe)
	if got := head("prod"); got == digest || strings.HasPrefix(got, "error") {
		t.Errorf("prod/hello:prod = %s after revoke, want the empty stage artifact", got)
	}
	st := statusOf(t, env, recipe)
	for _, stage := range []string{"dev", "staging", "prod"} {
		if got := inStage(st, stage); len(got) != 0 {
			t.Errorf("status after revoke: %s holds %v", stage, got)
		}
	}
	if r := mustRun(t, env, "revoke", "hello@1.0.0", "--reason", "CVE-2026-7", "-f", recipe); !strings.Contains(r.stdout, "already revoked") {
		t.Errorf("revoking again: %q, want already revoked", r.stdout)
	}
}
