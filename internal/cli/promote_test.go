package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/promote"
)

// stagedRecipe is the hello recipe with stage blocks appended.
func stagedRecipe(t *testing.T, repo, stages string) string {
	t.Helper()
	recipe := helloProject(t, repo)
	f, err := os.OpenFile(recipe, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(stages); err != nil {
		t.Fatal(err)
	}
	return recipe
}

func statusOf(t *testing.T, env []string, recipe string) promote.RecipeStatus {
	t.Helper()
	r := mustRun(t, env, "--output", "json", "status", "-f", recipe)
	var st promote.RecipeStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("decoding status %q: %v", r.stdout, err)
	}
	return st
}

func inStage(st promote.RecipeStatus, stage string) []string {
	var vs []string
	for _, v := range st.Versions {
		if _, ok := v.Stages[stage]; ok {
			vs = append(vs, v.Version)
		}
	}
	return vs
}

func TestPromoteInLocalLayoutWithGatesAndRevocation(t *testing.T) {
	recipe := stagedRecipe(t, "", `
stage "staging" {
  gate {
    min_soak = "1h"
  }
}
stage "prod" {
  gate {
    require_approval = true
  }
}
`)
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home, "BAKERY_ACTOR=ann"}
	bakeJSON(t, env, recipe)
	bakeJSON(t, env, "-var", "version=1.1.0", recipe)
	mustRun(t, env, "promote", "hello@1.0.0", "--to", "dev", "-f", recipe)

	// Refusals change nothing.
	before := snapshot(t, home)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"promote", "nosuch@1.0.0", "--to", "dev", "-f", recipe}, 1, `defines recipe "hello", not "nosuch"`},
		{[]string{"promote", "hello@9.9.9", "--to", "dev", "-f", recipe}, 1, "has no version 9.9.9; known versions: 1.0.0, 1.1.0"},
		{[]string{"promote", "hello@1.0.0", "--to", "qa", "-f", recipe}, 1, `unknown stage "qa"`},
		{[]string{"promote", "hello@1.1.0", "--to", "staging", "-f", recipe}, 1, "is not in dev, the stage before staging"},
		{[]string{"promote", "hello@1.0.0", "--to", "staging", "-f", recipe}, 1, "staging needs 1h0m0s (gate min_soak)"},
		{[]string{"promote", "hello@1.0.0", "--to", "staging", "--force", "-f", recipe}, 2, "--force needs --reason"},
		{[]string{"promote", "hello@1.0.0", "-f", recipe}, 2, "--to STAGE"},
		{[]string{"promote", "hello", "--to", "dev", "-f", recipe}, 2, "RECIPE@VERSION"},
	} {
		r := run(t, env, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
		sameTree(t, before, snapshot(t, home))
	}

	// --force --reason overrides the soak gate and is recorded.
	mustRun(t, env, "promote", "hello@1.0.0", "--to", "staging", "--force", "--reason", "hotfix for INC-7", "-f", recipe)
	r := run(t, env, "promote", "hello@1.0.0", "--to", "prod", "-f", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "run `bakery approve hello@1.0.0 --for prod` as someone other than you (ann, unverified)") {
		t.Fatalf("prod without approval: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, []string{"BAKERY_HOME=" + home, "BAKERY_ACTOR=bob"}, "approve", "hello@1.0.0", "--for", "prod", "-f", recipe)
	mustRun(t, env, "promote", "hello@1.0.0", "--to", "prod", "-f", recipe)
	if r := mustRun(t, env, "promote", "hello@1.0.0", "--to", "prod", "-f", recipe); !strings.Contains(r.stdout, "already in prod: nothing to do") {
		t.Errorf("second promotion: %q", r.stdout)
	}
	st := statusOf(t, env, recipe)
	for stage, want := range map[string]string{"dev": "1.0.0", "staging": "1.0.0", "prod": "1.0.0"} {
		if got := inStage(st, stage); len(got) != 1 || got[0] != want {
			t.Errorf("%s holds %v, want %s", stage, got, want)
		}
	}
	if se := st.Versions[1].Stages["prod"]; st.Versions[1].Version != "1.0.0" || se.By != "ann" || se.Since.IsZero() {
		t.Errorf("prod entry = %+v", st.Versions[1])
	}
	// The stage is a real tag in the layout: other tools see it. (A
	// subtest, so that without skopeo outside CI only this check skips.)
	t.Run("skopeo reads the stage tag", func(t *testing.T) {
		skopeo := requireTool(t, "skopeo")
		out, err := exec.Command(skopeo, "inspect", "oci:"+home+":hello:prod").CombinedOutput()
		if err != nil || !strings.Contains(string(out), st.Versions[1].Artifacts[0].Digest) {
			t.Errorf("skopeo inspect hello:prod: %v\n%s", err, out)
		}
	})

	// History, newest first, with actor, reason and approver.
	h := mustRun(t, env, "--output", "json", "history", "-f", recipe, "hello")
	var doc historyDoc
	if err := json.Unmarshal([]byte(h.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range doc.Events {
		got = append(got, ev.Action+" "+ev.Version+" "+ev.Stage)
	}
	want := "promote 1.0.0 prod|approve 1.0.0 prod|promote 1.0.0 staging|promote 1.0.0 dev"
	if !strings.HasPrefix(strings.Join(got, "|"), want) {
		t.Errorf("history = %v, want it to start with %s", got, want)
	}
	if ev := doc.Events[2]; !ev.Forced || ev.Reason != "hotfix for INC-7" || ev.Actor != "ann" {
		t.Errorf("forced event = %+v", ev)
	}
	if ev := doc.Events[1]; ev.Actor != "bob" || !ev.Unverified {
		t.Errorf("approve event = %+v, want bob's, unverified", ev)
	}
	if ev := doc.Events[0]; ev.ApprovedBy != "bob" {
		t.Errorf("promote event = %+v, want approved by bob", ev)
	}

	// Revocation: out of every stage, no promotion until unrevoked.
	mustRun(t, env, "revoke", "hello@1.0.0", "--reason", "CVE-2026-0001", "-f", recipe)
	st = statusOf(t, env, recipe)
	if len(inStage(st, "prod"))+len(inStage(st, "dev")) != 0 || !st.Versions[1].Revoked || st.Versions[1].RevokeReason != "CVE-2026-0001" {
		t.Errorf("after revoke: %+v", st.Versions[1])
	}
	if r := run(t, env, "promote", "hello@1.0.0", "--to", "dev", "-f", recipe); r.code != 1 || !strings.Contains(r.stderr, "is revoked (CVE-2026-0001)") {
		t.Errorf("promoting a revoked image: exit %d %q", r.code, r.stderr)
	}
	if r := run(t, env, "revoke", "hello@1.0.0", "-f", recipe); r.code != exitUsage || !strings.Contains(r.stderr, "give a --reason") {
		t.Errorf("revoke without reason: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, env, "unrevoke", "hello@1.0.0", "-f", recipe)
	mustRun(t, env, "promote", "hello@1.0.0", "--to", "dev", "-f", recipe)
}

// referrersRegistry is an in-process registry with the OCI 1.1 referrers API.
func referrersRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.WithReferrersSupport(true), registry.Logger(quietLogger()))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestPromoteContainerToStageRepositoryAndReadFromAnotherProcess(t *testing.T) {
	noDockerConfig(t)
	host := referrersRegistry(t, nil)
	recipe := stagedRecipe(t, host+"/team/hello", `
stage "prod" {
  repository = "`+host+`/prod/hello"
}
`)
	env := []string{"BAKERY_HOME=" + t.TempDir(), "BAKERY_ACTOR=ci-pipeline"}
	v1 := bakeJSON(t, env, recipe).Artifacts[0].Digest
	bakeJSON(t, env, "-var", "version=1.1.0", recipe)
	for _, stage := range []string{"dev", "staging", "prod"} {
		mustRun(t, env, "promote", "hello@1.0.0", "--to", stage, "-f", recipe)
	}
	// The same bytes, by digest, in the stage repository: never rebuilt.
	for _, ref := range []string{host + "/prod/hello:prod", host + "/team/hello:staging", host + "/team/hello:dev"} {
		r, _ := name.ParseReference(ref)
		d, err := remote.Head(r)
		if err != nil || d.Digest.String() != v1 {
			t.Errorf("%s = %v, %v; want %s", ref, d, err, v1)
		}
	}

	// Another process with no local state at all sees the same catalog.
	bin := bakeryBinary(t)
	fresh := append(os.Environ(), "HOME="+t.TempDir(), "BAKERY_HOME="+t.TempDir(), "DOCKER_CONFIG="+t.TempDir())
	cmd := exec.Command(bin, "--output", "json", "status", "-f", recipe)
	cmd.Env = fresh
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("status from a fresh process: %v", err)
	}
	var st promote.RecipeStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	if got := inStage(st, "prod"); len(got) != 1 || got[0] != "1.0.0" || st.Versions[1].Stages["prod"].By != "ci-pipeline" {
		t.Errorf("fresh status: prod holds %v; %+v", got, st.Versions)
	}
	// Its history is every event this test caused, newest first, with
	// who did it: nothing missing, nothing extra, nothing out of order.
	cmd = exec.Command(bin, "--output", "json", "history", "-f", recipe, "hello")
	cmd.Env = fresh
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("history from a fresh process: %v\n%s", err, out)
	}
	var doc historyDoc
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("decoding the history %q: %v", out, err)
	}
	var got []string
	for _, ev := range doc.Events {
		got = append(got, strings.Join([]string{ev.Action, ev.Version, ev.Stage, ev.Actor}, " "))
	}
	want := []string{
		"promote 1.0.0 prod ci-pipeline",
		"promote 1.0.0 staging ci-pipeline",
		"promote 1.0.0 dev ci-pipeline",
		"bake 1.1.0  ci-pipeline",
		"bake 1.0.0  ci-pipeline",
	}
	if !slices.Equal(got, want) {
		t.Errorf("history from a fresh process:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestPromoteRefusedCredentialsChangesNothing(t *testing.T) {
	noDockerConfig(t)
	var locked sync.Mutex
	lock := false
	host := referrersRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			locked.Lock()
			deny := lock && r.Method != http.MethodGet && r.Method != http.MethodHead
			locked.Unlock()
			if deny {
				http.Error(w, `{"errors":[{"code":"DENIED","message":"read-only token"}]}`, http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	recipe := stagedRecipe(t, host+"/team/hello", "")
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	bakeJSON(t, env, recipe)
	locked.Lock()
	lock = true
	locked.Unlock()
	r := run(t, env, "promote", "hello@1.0.0", "--to", "dev", "-f", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "refused credentials") {
		t.Fatalf("promote with a read-only token: exit %d %q", r.code, r.stderr)
	}
	if got := inStage(statusOf(t, env, recipe), "dev"); len(got) != 0 {
		t.Errorf("dev holds %v after a refused promotion", got)
	}
	ref, _ := name.ParseReference(host + "/team/hello:dev")
	if _, err := remote.Head(ref); err == nil {
		t.Error("the dev tag exists after a refused promotion")
	}
}

func TestConcurrentPromotionsEndWithOneVersionInTheStage(t *testing.T) {
	noDockerConfig(t)
	host := referrersRegistry(t, nil)
	recipe := stagedRecipe(t, host+"/team/hello", "")
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	bakeJSON(t, env, recipe)
	bakeJSON(t, env, "-var", "version=1.1.0", recipe)
	bin := bakeryBinary(t)
	versions := []string{"1.0.0", "1.1.0"}
	history := historyEvents(t, env, recipe)
	holder := "" // the version in dev
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		outs := make([][]byte, 2)
		for i, v := range versions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(bin, "promote", "hello@"+v, "--to", "dev", "-f", recipe)
				cmd.Env = append(os.Environ(), env...)
				outs[i], errs[i] = cmd.CombinedOutput()
			}()
		}
		wg.Wait()
		for i := range errs {
			// The loser may report that a newer promotion holds the stage.
			if errs[i] != nil && !strings.Contains(string(outs[i]), "a concurrent promotion won the race") {
				t.Fatalf("round %d: promotion %d failed: %v\n%s", round, i, errs[i], outs[i])
			}
		}
		st := statusOf(t, env, recipe)
		inDev := inStage(st, "dev")
		if len(inDev) != 1 {
			t.Fatalf("round %d: dev holds %v, want exactly one version", round, inDev)
		}

		// This round's events: the history grew by them and kept the rest.
		now := historyEvents(t, env, recipe)
		if len(now) < len(history) || !slices.EqualFunc(now[len(now)-len(history):], history, sameEvent) {
			t.Fatalf("round %d: the history before the round is no longer its end:\nbefore %+v\nnow %+v", round, history, now)
		}
		added := slices.Clone(now[:len(now)-len(history)])
		history = now
		slices.Reverse(added) // oldest first

		// Each promotion that succeeded is one of them.
		promoted := map[string]bool{}
		for _, ev := range added {
			if ev.Action == catalog.ActionPromote {
				promoted[ev.Version] = true
			}
		}
		for i, v := range versions {
			if errs[i] == nil && strings.Contains(string(outs[i]), "promoted hello@"+v+" to dev") && !promoted[v] {
				t.Errorf("round %d: bakery said it promoted %s, but the round's history has no such promotion: %+v", round, v, added)
			}
		}
		if len(promoted) == 0 {
			t.Errorf("round %d: no promotion recorded; one of the two always takes the stage: %+v", round, added)
		}
		// Replayed in order, they move one version at a time through dev
		// and leave in it the version that status shows. A promotion that
		// displaces a version records its demotion at the same instant,
		// which is applied first.
		slices.SortStableFunc(added, func(a, b catalog.Event) int {
			if c := a.Time.Compare(b.Time); c != 0 {
				return c
			}
			return strings.Compare(actionOrder(a.Action), actionOrder(b.Action))
		})
		for _, ev := range added {
			if ev.Stage != "dev" || !slices.Contains(versions, ev.Version) {
				t.Errorf("round %d: unexpected event %+v", round, ev)
				continue
			}
			switch ev.Action {
			case catalog.ActionDemote:
				if holder != ev.Version {
					t.Errorf("round %d: %s demoted from dev while dev held %q: %+v", round, ev.Version, holder, added)
				}
				holder = ""
			case catalog.ActionPromote:
				if holder != "" {
					t.Errorf("round %d: %s promoted to dev while it held %s, with no demotion: %+v", round, ev.Version, holder, added)
				}
				holder = ev.Version
			default:
				t.Errorf("round %d: unexpected %s event %+v", round, ev.Action, ev)
			}
		}
		if holder != inDev[0] {
			t.Errorf("round %d: the history leaves %q in dev, status shows %s: %+v", round, holder, inDev[0], added)
		}
		holder = inDev[0]
	}
}

// actionOrder sorts a demotion before a promotion of the same instant.
func actionOrder(action string) string {
	if action == catalog.ActionDemote {
		return "0"
	}
	return "1"
}

// sameEvent reports whether a and b are the same history event.
func sameEvent(a, b catalog.Event) bool {
	return a.Time.Equal(b.Time) && a.Action == b.Action && a.Version == b.Version && a.Stage == b.Stage && a.Actor == b.Actor
}

// historyEvents returns the recipe's history, newest first.
func historyEvents(t *testing.T, env []string, recipe string) []catalog.Event {
	t.Helper()
	h := mustRun(t, env, "--output", "json", "history", "-f", recipe, "hello")
	var doc historyDoc
	if err := json.Unmarshal([]byte(h.stdout), &doc); err != nil {
		t.Fatalf("decoding the history %q: %v", h.stdout, err)
	}
	return doc.Events
}

func TestOutdatedContainerBase(t *testing.T) {
	noDockerConfig(t)
	host := referrersRegistry(t, nil)
	push := func(size int64) {
		img := randomImage(t, size)
		ref, _ := name.ParseReference(host + "/base/os:1")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	push(256)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"app.bake.hcl": strings.Replace(helloRecipe(""), `"scratch"`, `"`+host+`/base/os:1"`, 1),
		"new.bake.hcl": strings.Replace(strings.Replace(helloRecipe(""), `"hello"`, `"fresh"`, 2), `"scratch"`, `"`+host+`/base/os:1"`, 1),
		"app/hello":    "#!/bin/sh\n",
	})
	app, fresh := filepath.Join(dir, "app.bake.hcl"), filepath.Join(dir, "new.bake.hcl")
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	bakeJSON(t, env, app)
	if r := run(t, env, "outdated", app); r.code != 0 || !strings.Contains(r.stdout, "up to date with their bases") {
		t.Fatalf("outdated after a bake: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	push(512) // a new image behind the base tag
	r := run(t, env, "outdated", app, fresh)
	if r.code != 3 || !strings.Contains(r.stdout, "hello: container hello: base "+host+"/base/os:1 is now sha256:") || !strings.Contains(r.stdout, "fresh: container fresh: never baked") {
		t.Fatalf("outdated: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, env, "outdated", "--files", app, fresh)
	if r.code != 3 || strings.TrimSpace(r.stdout) != app+"\n"+fresh {
		t.Fatalf("outdated --files: exit %d %q", r.code, r.stdout)
	}
}

func TestDuplicateRecipeNamesAreRefused(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"recipes/a.bake.hcl": helloRecipe(""),
		"recipes/b.bake.hcl": helloRecipe(""),
		"recipes/app/hello":  "#!/bin/sh\n",
	})
	t.Chdir(dir)
	r := run(t, []string{"BAKERY_HOME=" + t.TempDir()}, "status", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, `recipe "hello" is defined twice, in recipes/a.bake.hcl and recipes/b.bake.hcl`) {
		t.Fatalf("exit %d, %q", r.code, r.stderr)
	}
}
