package cli

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// retainContainerRecipe is the hello recipe with keep_last = 1.
func retainContainerRecipe(t *testing.T, repo string) string {
	t.Helper()
	recipe := helloProject(t, repo)
	b, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	retain := "retain {\n  keep_last     = 1\n  keep_previous = 0\n}\n"
	if err := os.WriteFile(recipe, append(b, retain...), 0o644); err != nil {
		t.Fatal(err)
	}
	return recipe
}

// layoutBlobs counts the files in the layout's blobs/sha256.
func layoutBlobs(t *testing.T, home string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(home, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestRetireContainerLayout bakes four versions of a container into a
// layout, promotes the second to dev, and retires with keep_last = 1: the
// plan lists every version with the layout and digest, --yes removes the
// two others' tags, events and blobs, the staged and the newest stay
// readable by skopeo and umoci, nothing dangles, and a second retire finds
// nothing.
func TestRetireContainerLayout(t *testing.T) {
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	recipe := retainContainerRecipe(t, "")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	versions := []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"}
	for i, v := range versions {
		mustRunAt(t, t0.Add(time.Duration(i)*time.Hour), env, "bake", "-var", "version="+v, recipe)
	}
	now := t0.Add(10 * time.Hour)
	mustRunAt(t, now, env, "promote", "hello@1.0.1", "--to", "dev", "-f", recipe)
	before := layoutBlobs(t, home)

	plan := mustRunAt(t, now, env, "--output", "json", "retire", recipe)
	if strings.Contains(plan.stderr, "not retired yet") {
		t.Errorf("retire still warns about containers in the layout: %s", plan.stderr)
	}
	var doc struct {
		Images []struct {
			Kind      string `json:"kind"`
			Decisions []struct {
				Ref       struct{ Version string } `json:"ref"`
				Keep      bool                     `json:"keep"`
				Created   time.Time                `json:"created"`
				Locations []struct {
					Where, ID string
				} `json:"locations"`
			} `json:"decisions"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(plan.stdout), &doc); err != nil || len(doc.Images) != 1 {
		t.Fatalf("retire --output json: %v\n%s", err, plan.stdout)
	}
	var removed []string
	for _, d := range doc.Images[0].Decisions {
		if len(d.Locations) != 1 || d.Locations[0].Where != home || !strings.HasPrefix(d.Locations[0].ID, "sha256:") {
			t.Errorf("%s: locations %+v, want the layout and a digest", d.Ref, d.Locations)
		}
		if !d.Keep {
			removed = append(removed, d.Ref.Version)
		}
		if i := slices.Index(versions, d.Ref.Version); !d.Created.Equal(t0.Add(time.Duration(i) * time.Hour)) {
			t.Errorf("%s: created %s, want its bake time %s", d.Ref.Version, d.Created, t0.Add(time.Duration(i)*time.Hour))
		}
	}
	slices.Sort(removed)
	if want := []string{"1.0.0", "1.0.2"}; !slices.Equal(removed, want) || doc.Images[0].Kind != "container" {
		t.Fatalf("plan removes %v (kind %s), want %v\n%s", removed, doc.Images[0].Kind, want, plan.stdout)
	}
	if got := layoutBlobs(t, home); got != before {
		t.Fatalf("the plan without --yes changed the layout: %d blobs, was %d", got, before)
	}

	out := mustRunAt(t, now, env, "retire", "--yes", recipe)
	if !strings.Contains(out.stdout, "retired 2 of 2 versions") {
		t.Errorf("retire --yes said:\n%s", out.stdout)
	}
	after := layoutBlobs(t, home)
	if after >= before {
		t.Errorf("blobs: %d before retire, %d after", before, after)
	}
	l, err := catalogoci.OpenLayout(home)
	if err != nil {
		t.Fatal(err)
	}
	descs, err := l.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if name := d.Annotations["org.opencontainers.image.ref.name"]; name == "hello:1.0.0" || name == "hello:1.0.2" {
			t.Errorf("%s is still tagged", name)
		}
	}
	idx, err := layout.ImageIndexFromPath(home)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("the layout after retire: %v", err)
	}
	for _, ref := range []string{"hello:1.0.1", "hello:1.0.3", "hello:dev"} {
		if out, err := exec.Command("skopeo", "inspect", "oci:"+home+":"+ref).CombinedOutput(); err != nil {
			t.Errorf("skopeo inspect %s: %v: %s", ref, err, out)
		}
		if out, err := exec.Command("umoci", "stat", "--image", home+":"+ref).CombinedOutput(); err != nil {
			t.Errorf("umoci stat %s: %v: %s", ref, err, out)
		}
	}
	st := mustRunAt(t, now, env, "--output", "json", "status", "-f", recipe)
	if !strings.Contains(st.stdout, `"1.0.3"`) || !strings.Contains(st.stdout, `"1.0.1"`) {
		t.Errorf("status does not list the kept versions:\n%s", st.stdout)
	}
	for _, v := range []string{"1.0.0", "1.0.2"} {
		if strings.Contains(st.stdout, `"`+v+`"`) {
			t.Errorf("status still lists %s:\n%s", v, st.stdout)
		}
	}

	retiredIn(t, mustRunAt(t, now, env, "--output", "json", "history", "-f", recipe, "hello").stdout, now, "1.0.0", "1.0.2")

	again := mustRunAt(t, now, env, "retire", "--yes", recipe)
	if !strings.Contains(again.stdout, "nothing to remove") || layoutBlobs(t, home) != after {
		t.Errorf("a second retire:\n%s", again.stdout)
	}
}

// TestRetireContainerRegistry bakes three versions into the in-process
// registry, promotes the first to dev, and retires with keep_last = 1:
// the middle version's tag and manifest are deleted, dev and the newest
// stay, and a second retire finds nothing.
func TestRetireContainerRegistry(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	recipe := retainContainerRecipe(t, host+"/team/hello")
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	digests := map[string]string{}
	for i, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		mustRunAt(t, t0.Add(time.Duration(i)*time.Hour), env, "bake", "-var", "version="+v, recipe)
		ref, err := name.ParseReference(host + "/team/hello:" + v)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(ref)
		if err != nil {
			t.Fatal(err)
		}
		digests[v] = d.Digest.String()
	}
	now := t0.Add(10 * time.Hour)
	mustRunAt(t, now, env, "promote", "hello@1.0.0", "--to", "dev", "-f", recipe)
	out := mustRunAt(t, now, env, "retire", "--yes", recipe)
	if !strings.Contains(out.stdout, "retired 1 of 1 versions") || strings.Contains(out.stderr, "not retired yet") {
		t.Errorf("retire --yes:\n%s\n%s", out.stdout, out.stderr)
	}
	repo, err := name.NewRepository(host + "/team/hello")
	if err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]bool{"1.0.0": true, "1.0.1": false, "1.0.2": true, "dev": true} {
		_, err := remote.Head(repo.Tag(tag))
		if got := err == nil; got != want {
			t.Errorf("%s present = %v, want %v (%v)", tag, got, want, err)
		}
	}
	if _, err := remote.Head(repo.Digest(digests["1.0.1"])); err == nil {
		t.Error("the manifest of 1.0.1 is still there by digest")
	}
	retiredIn(t, mustRunAt(t, now, env, "--output", "json", "history", "-f", recipe, "hello").stdout, now, "1.0.1")
	// The registry has no referrers API: the fallback tag of 1.0.1's
	// events went with it.
	tags, err := remote.List(repo)
	if err != nil {
		t.Fatal(err)
	}
	if fallback := strings.Replace(digests["1.0.1"], ":", "-", 1); slices.Contains(tags, fallback) {
		t.Errorf("the referrers fallback tag %s of 1.0.1 is left: %v", fallback, tags)
	}
	again := mustRunAt(t, now, env, "retire", "--yes", recipe)
	if !strings.Contains(again.stdout, "nothing to remove") {
		t.Errorf("a second retire:\n%s", again.stdout)
	}
}

// retiredIn checks that history's JSON lists one retire event at at for
// each of versions, and none for others.
func retiredIn(t *testing.T, history string, at time.Time, versions ...string) {
	t.Helper()
	var doc struct {
		Events []struct {
			Action, Version, Reason string
			Time                    time.Time
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(history), &doc); err != nil {
		t.Fatalf("history --output json: %v\n%s", err, history)
	}
	var got []string
	for _, ev := range doc.Events {
		if ev.Action == "retire" {
			got = append(got, ev.Version)
			if !ev.Time.Equal(at) || ev.Reason == "" {
				t.Errorf("retire event of %s at %s with reason %q, want at %s with the plan's reasons", ev.Version, ev.Time, ev.Reason, at)
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, versions) {
		t.Errorf("history's retire events are of %v, want %v:\n%s", got, versions, history)
	}
}
