package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/bake"
	"github.com/bakery-sh/bakery/internal/mototest"
)

const autoAppRecipe = `recipe "app" {
  version = "auto"
  stages  = ["dev"]
}
container "app" {
  base = "scratch"
  layer {
    source      = "files/"
    destination = "/srv/"
  }
}
`

// TestBakeAutoVersionTwoRunnersWithLedger: two bakes of an auto recipe
// at once, sharing a ledger (BAKERY_LEDGER, on moto's S3) and the local
// layout, give one image and one version, DATE.1; both report it; no
// lease is left in the ledger; a third run says it is up to date at
// that version.
func TestBakeAutoVersionTwoRunnersWithLedger(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	bucket, _ := ledgerBucket(t, moto)
	env = append(env, "BAKERY_LEDGER=s3://"+bucket+"/team", "BAKERY_LEASE_POLL=20ms")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"app.bake.hcl": autoAppRecipe, "files/a.txt": "one\n"})
	recipe := filepath.Join(dir, "app.bake.hcl")
	// Two bakery processes (two runs in one process would share
	// urfave/cli's package-level help command, which is not safe), on the
	// wall clock: the version is today's, or tomorrow's across midnight.
	bin := bakeryBinary(t)
	before := time.Now().UTC()
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Go(func() {
			cmd := exec.Command(bin, "-q", "--output", "json", "bake", recipe)
			cmd.Env = append(os.Environ(), env...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				code = -1
				errb.WriteString(err.Error())
			}
			results[i] = result{code, out.String(), errb.String()}
		})
	}
	wg.Wait()
	want := before.Format("2006.01.02") + ".1"
	if after := time.Now().UTC().Format("2006.01.02") + ".1"; after != want && strings.Contains(results[0].stdout, after) {
		want = after
	}
	now := before
	baked := 0
	var digest string
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("runner %d: exit %d\n%s", i, r.code, r.stderr)
		}
		var res bake.Result
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("runner %d: %v in %q", i, err, r.stdout)
		}
		if res.Version != want || res.Artifacts[0].Version != want || res.Artifacts[0].Ref != "app:"+want {
			t.Errorf("runner %d: version %s, artifact %+v; want %s", i, res.Version, res.Artifacts[0], want)
		}
		if !res.Cached {
			baked++
		}
		if digest != "" && res.Artifacts[0].Digest != digest {
			t.Errorf("the runners report two images: %s and %s", digest, res.Artifacts[0].Digest)
		}
		digest = res.Artifacts[0].Digest
	}
	if baked != 1 {
		t.Errorf("%d runners baked, want exactly 1", baked)
	}
	if locks := objects(t, moto, bucket, "team/app/locks/"); len(locks) != 0 {
		t.Errorf("the bakes left leases behind: %v", locks)
	}
	r := mustRunAt(t, now.Add(time.Hour), env, "bake", recipe)
	if !strings.Contains(r.stdout, "app@"+want+" app: up to date app:"+want) {
		t.Errorf("third run, next day, nothing changed: stdout\n%s\nwant it up to date at %s", r.stdout, want)
	}
}

// TestBakeAutoVersionRefusesVarVersion: -var version=... with version =
// "auto" is one error at the version, and nothing is baked.
func TestBakeAutoVersionRefusesVarVersion(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"app.bake.hcl": autoAppRecipe, "files/a.txt": "one\n"})
	home := t.TempDir()
	before := snapshot(t, home)
	r := run(t, []string{"BAKERY_HOME=" + home}, "bake", "-var", "version=2.0.0", filepath.Join(dir, "app.bake.hcl"))
	if r.code == 0 {
		t.Fatalf("exit 0, want a refusal; stdout:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "app.bake.hcl:2:13: Error: version is \"auto\", and -var version=2.0.0 is given") {
		t.Errorf("stderr:\n%s\nwant the error at app.bake.hcl:2:13", r.stderr)
	}
	if n := strings.Count(r.stderr, "Error:"); n != 1 {
		t.Errorf("%d errors, want 1:\n%s", n, r.stderr)
	}
	sameTree(t, before, snapshot(t, home))
}

// TestBakeFolderVarVersionServesOtherRecipes: in a folder, -var version
// serves the recipes that declare it; an auto recipe beside them, which
// does not, keeps assigning its own version.
func TestBakeFolderVarVersionServesOtherRecipes(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"app.bake.hcl": autoAppRecipe,
		"lib.bake.hcl": strings.NewReplacer(`"hello"`, `"lib"`, `"app/"`, `"files/"`).Replace(helloRecipe("")),
		"files/a.txt":  "one\n",
	})
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	r := mustRunAt(t, now, []string{"BAKERY_HOME=" + t.TempDir()}, "bake", "-var", "version=2.0.0", dir)
	for _, want := range []string{"app@2026.11.26.1 app: baked", "lib@2.0.0 lib: baked"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout:\n%s\nwant %q", r.stdout, want)
		}
	}
}

// TestValidateBadVersionFormat: a bad version_format is one error at it,
// file:line:col, with what placeholders there are.
func TestValidateBadVersionFormat(t *testing.T) {
	dir := t.TempDir()
	src := strings.Replace(autoAppRecipe, "  stages", "  version_format = \"{date}.{hour}\"\n  stages", 1)
	writeFiles(t, dir, map[string]string{"app.bake.hcl": src, "files/a.txt": "one\n"})
	r := run(t, nil, "validate", filepath.Join(dir, "app.bake.hcl"))
	if r.code == 0 {
		t.Fatalf("validate accepted version_format = \"{date}.{hour}\":\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "app.bake.hcl:3:20: Error: invalid version_format \"{date}.{hour}\": unknown placeholder {hour}") || !strings.Contains(r.stderr, "{n}") {
		t.Errorf("stderr:\n%s\nwant the error at app.bake.hcl:3:20 naming the placeholders", r.stderr)
	}
	if n := strings.Count(r.stderr, "Error:"); n != 1 {
		t.Errorf("%d errors, want 1:\n%s", n, r.stderr)
	}
}
