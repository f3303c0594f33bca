package retire

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// containerLayout bakes versions of web's container "hello" into a new
// layout, an hour apart.
func containerLayout(t *testing.T, t0 time.Time, versions ...string) (*oci.Layout, *oci.LayoutStore) {
	t.Helper()
	ctx := context.Background()
	l, err := oci.OpenLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range versions {
		img, err := random.Image(64, 2)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1)
		img = mutate.Annotations(img, map[string]string{
			catalog.AnnotationRecipe: "web", catalog.AnnotationArtifact: "hello", catalog.AnnotationVersion: v,
			catalog.AnnotationCreated: t0.Add(time.Duration(i) * time.Hour).Format(time.RFC3339),
		}).(v1.Image)
		tx := l.Begin()
		if _, err := tx.WriteImage(ctx, img); err != nil {
			t.Fatal(err)
		}
		d, err := partial.Descriptor(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Tag("hello:"+v, *d); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return l, l.Store("hello", "web", "hello")
}

func versionsIn(t *testing.T, s *oci.LayoutStore) []string {
	t.Helper()
	es, err := s.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Version)
	}
	slices.Sort(out)
	return out
}

// TestLayoutContainersApply plans keep_last = 1 over three versions, then
// promotes one the plan removes before applying: it is skipped and
// reported, the other goes, and applying the same plan again is a no-op.
func TestLayoutContainersApply(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, s := containerLayout(t, t0, "1.0.0", "1.0.1", "1.0.2")
	c := NewLayoutContainers("web", "hello", l, s)
	o, err := c.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plan := MakePlan(o, Policy{KeepLast: 1}, t0.Add(24*time.Hour))
	var remove []string
	for _, d := range plan.Remove() {
		remove = append(remove, d.Ref.Version)
	}
	if !slices.Equal(remove, []string{"1.0.1", "1.0.0"}) {
		t.Fatalf("plan removes %v", remove)
	}
	// Between plan and apply, 1.0.1 enters dev.
	for _, e := range o.Entries {
		if e.Version == "1.0.1" {
			ev := catalog.Event{Time: t0.Add(25 * time.Hour), Action: catalog.ActionPromote, Recipe: "web", Version: "1.0.1",
				Artifact: "hello", Kind: catalog.KindContainer, Stage: "dev", Actor: "ops"}
			if err := s.Promote(ctx, e, catalog.StageSpec{Name: "dev"}, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	rep, err := c.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Retired) != 1 || rep.Retired[0].Version != "1.0.0" || len(rep.Skipped) != 1 || rep.Skipped[0].Ref.Version != "1.0.1" || rep.Blobs == 0 {
		t.Errorf("report %+v", rep)
	}
	if got := versionsIn(t, s); !slices.Equal(got, []string{"1.0.1", "1.0.2"}) {
		t.Errorf("versions left: %v", got)
	}
	again, err := c.Apply(ctx, plan)
	if err != nil || again.Blobs != 0 || again.Manifests != 0 {
		t.Errorf("the same plan again: %+v, %v", again, err)
	}
}

// TestLayoutContainersApplyCancelled: a cancelled apply removes nothing
// and says to run again; the next run finishes.
func TestLayoutContainersApplyCancelled(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, s := containerLayout(t, t0, "1.0.0", "1.0.1")
	c := NewLayoutContainers("web", "hello", l, s)
	o, err := c.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	plan := MakePlan(o, Policy{KeepLast: 1}, t0.Add(24*time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Apply(ctx, plan); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled apply: %v", err)
	}
	if got := versionsIn(t, s); len(got) != 2 {
		t.Errorf("a cancelled apply removed versions: %v", got)
	}
	if _, err := c.Apply(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	if got := versionsIn(t, s); !slices.Equal(got, []string{"1.0.1"}) {
		t.Errorf("versions left: %v", got)
	}
}

// TestLayoutContainersRemoveUnreferencedBlobs: a blob a killed bake or
// prune left, a day old, is listed as an orphan and deleted; a young one
// and the blobs of a bake not committed yet stay, and the bake commits.
func TestLayoutContainersRemoveUnreferencedBlobs(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, s := containerLayout(t, t0, "1.0.0", "1.0.1")
	write := func(content string, age time.Duration) v1.Hash {
		t.Helper()
		h, _, err := v1.SHA256(strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.WriteBlob(h, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(l.BlobPath(h), at, at); err != nil {
			t.Fatal(err)
		}
		return h
	}
	old := write("left by a killed bake", OrphanBlobMinAge+time.Hour)
	young := write("written a moment ago", time.Minute)
	// A bake in progress: its blobs are written, index.json not yet.
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	tx := l.Begin()
	defer tx.Rollback()
	if _, err := tx.WriteImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	c := NewLayoutContainers("web", "hello", l, s)
	o, err := c.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plan := MakePlan(o, Policy{KeepLast: 5}, time.Now())
	var ids []string
	for _, x := range plan.Orphans {
		ids = append(ids, x.Kind+" "+x.ID)
	}
	if want := []string{"blob " + old.String()}; !slices.Equal(ids, want) {
		t.Fatalf("orphans %v, want %v (of %d unreferenced)", ids, want, len(o.Orphans))
	}
	rep, err := c.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != 1 || rep.Bytes != int64(len("left by a killed bake")) {
		t.Errorf("report %+v, want the one blob", rep)
	}
	if _, err := os.Stat(l.BlobPath(old)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old unreferenced blob is still there: %v", err)
	}
	if _, err := os.Stat(l.BlobPath(young)); err != nil {
		t.Errorf("the young unreferenced blob is gone: %v", err)
	}
	d, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Tag("hello:1.0.2", *d); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the bake in progress could not commit: %v", err)
	}
}
