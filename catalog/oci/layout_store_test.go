package oci

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// bakeVersions writes bakery images of versions into the layout, tagged
// hello:VERSION, and returns them.
func bakeVersions(t *testing.T, l *Layout, versions ...string) map[string]v1.Image {
	t.Helper()
	imgs := map[string]v1.Image{}
	for _, v := range versions {
		imgs[v] = withPlatform(t, bakedImage(t, v, "2025-02-01T00:00:00Z"), "amd64")
		bakeInto(t, l, testArtifact+":"+v, imgs[v])
	}
	return imgs
}

func layoutStore(l *Layout) *LayoutStore { return l.Store(testArtifact, testRecipe, testArtifact) }

// layoutTag returns the digest NAME:TAG names in the layout, or "".
func layoutTag(t *testing.T, l *Layout, tag string) string {
	t.Helper()
	d, err := l.Find(testArtifact + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil {
		return ""
	}
	return d.Digest.String()
}

func TestLayoutStoreLifecycle(t *testing.T) {
	dir := t.TempDir()
	l := openLayout(t, dir)
	imgs := bakeVersions(t, l, "1.10.0", "1.0.0", "1.1.0")
	bakeInto(t, l, "hello:latest", imgs["1.1.0"])                                                                              // never promoted into: not a stage
	bakeInto(t, l, "other:1.0.0", withPlatform(t, randomImage(t, map[string]string{catalog.AnnotationVersion: "1"}), "amd64")) // another artifact
	s := layoutStore(l)
	ctx := context.Background()

	es := entries(t, s)
	if got, want := versionsOf(es), []string{"1.0.0", "1.1.0", "1.10.0"}; !slices.Equal(got, want) {
		t.Fatalf("versions = %v, want %v", got, want)
	}
	for _, e := range es {
		img := imgs[e.Version]
		if e.Digest != digestOf(t, img) || e.Reference != "hello:"+e.Version || e.Size != imageSize(t, img) || e.Kind != KindContainer {
			t.Errorf("entry %s = %+v", e.Version, e.Image)
		}
		if want := []catalog.Location{{Where: dir, ID: e.Digest}}; !reflect.DeepEqual(e.Locations, want) {
			t.Errorf("%s locations = %v, want %v", e.Version, e.Locations, want)
		}
		if len(e.Stages) != 0 || e.Revoked || !slices.Equal(actions(e), []string{"bake"}) {
			t.Errorf("fresh %s: stages %v revoked %v history %v", e.Version, e.Stages, e.Revoked, actions(e))
		}
	}

	// Promote into a stage of the layout (no repository of its own).
	dev := catalog.StageSpec{Name: "dev"}
	ev := promoteEvent("1.0.0", "dev", "ann", testTime(0))
	if err := s.Promote(ctx, entryOf(t, es, "1.0.0"), dev, ev); err != nil {
		t.Fatal(err)
	}
	if got := layoutTag(t, l, "dev"); got != digestOf(t, imgs["1.0.0"]) {
		t.Fatalf("hello:dev = %q, want 1.0.0's digest", got)
	}
	es = entries(t, s)
	if got := entryOf(t, es, "1.0.0").Stages; !reflect.DeepEqual(got, map[string]catalog.StageEntry{"dev": {Since: testTime(0), By: "ann"}}) {
		t.Errorf("1.0.0 stages = %v", got)
	}

	// Again, with the same event and with a later one: nothing changes.
	index := readFile(t, filepath.Join(dir, "index.json"))
	blobs := blobFiles(t, dir)
	for _, again := range []catalog.Event{ev, promoteEvent("1.0.0", "dev", "ann", testTime(time.Minute))} {
		if err := s.Promote(ctx, entryOf(t, es, "1.0.0"), dev, again); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, filepath.Join(dir, "index.json")); !bytes.Equal(got, index) || !slices.Equal(blobFiles(t, dir), blobs) {
		t.Errorf("promoting again changed the layout")
	}

	// Another version takes the stage; the holder is demoted.
	mustPromote(t, s, "1.1.0", catalog.StageSpec{Name: "dev"}, "bob", testTime(time.Hour))
	es = entries(t, s)
	if got := holders(es, "dev"); !slices.Equal(got, []string{"1.1.0"}) || layoutTag(t, l, "dev") != digestOf(t, imgs["1.1.0"]) {
		t.Fatalf("dev holders = %v, hello:dev = %s", got, layoutTag(t, l, "dev"))
	}
	old := entryOf(t, es, "1.0.0")
	if got, want := actions(old), []string{"bake", "promote:dev", "demote:dev"}; !slices.Equal(got, want) {
		t.Errorf("1.0.0 history = %v, want %v", got, want)
	}
	if d := old.Events[2]; d.Reason != "replaced by 1.1.0" || !d.Time.Equal(testTime(time.Hour)) || d.Actor != "bob" {
		t.Errorf("demote event = %+v", d)
	}

	// An older promotion is recorded and loses at once.
	err := s.Promote(ctx, old, catalog.StageSpec{Name: "dev"}, promoteEvent("1.0.0", "dev", "ann", testTime(30*time.Minute)))
	if !errors.Is(err, ErrSuperseded) {
		t.Errorf("older promotion: err = %v, want ErrSuperseded", err)
	}
	if got := holders(entries(t, s), "dev"); !slices.Equal(got, []string{"1.1.0"}) {
		t.Errorf("dev holders = %v", got)
	}

	// Revoke removes the stage tag, keeps the version tag.
	cur := entryOf(t, entries(t, s), "1.1.0")
	if err := s.Revoke(ctx, cur, revokeEvent(catalog.ActionRevoke, "1.1.0", "CVE", testTime(2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := layoutTag(t, l, "dev"); got != "" {
		t.Errorf("hello:dev = %s after revoke", got)
	}
	if layoutTag(t, l, "1.1.0") == "" || layoutTag(t, l, "latest") == "" {
		t.Error("revoke removed a tag that is not a stage")
	}
	cur = entryOf(t, entries(t, s), "1.1.0")
	if !cur.Revoked || cur.RevokeReason != "CVE" || len(cur.Stages) != 0 {
		t.Errorf("after revoke: revoked %v reason %q stages %v", cur.Revoked, cur.RevokeReason, cur.Stages)
	}
	if err := s.Promote(ctx, cur, catalog.StageSpec{Name: "dev"}, promoteEvent("1.1.0", "dev", "a", testTime(3*time.Hour))); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("promoting a revoked image: err = %v", err)
	}
	if err := s.Unrevoke(ctx, cur, revokeEvent(catalog.ActionUnrevoke, "1.1.0", "", testTime(4*time.Hour))); err != nil {
		t.Fatal(err)
	}
	cur = entryOf(t, entries(t, s), "1.1.0")
	if cur.Revoked || len(cur.Stages) != 0 {
		t.Errorf("after unrevoke: revoked %v stages %v", cur.Revoked, cur.Stages)
	}
	if got, want := actions(cur), []string{"bake", "promote:dev", "revoke", "unrevoke"}; !slices.Equal(got, want) {
		t.Errorf("1.1.0 history = %v, want %v", got, want)
	}

	// Another process sees the same.
	if a, b := entries(t, s), entries(t, layoutStore(openLayout(t, dir))); !reflect.DeepEqual(a, b) {
		t.Errorf("a second layout value sees\n%+v\nthe first\n%+v", b, a)
	}
}

// TestLayoutStoreEventsAreUnnamed checks how events are stored: a manifest
// blob with the image as subject, listed without a ref name in the
// layout's history file, not in index.json, which lists images only.
func TestLayoutStoreEventsAreUnnamed(t *testing.T) {
	dir := t.TempDir()
	l := openLayout(t, dir)
	imgs := bakeVersions(t, l, "1.0.0")
	mustPromote(t, layoutStore(l), "1.0.0", catalog.StageSpec{Name: "prod"}, "ann", testTime(0))
	descs, err := l.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if _, named := d.Annotations[catalog.AnnotationRefName]; !named {
			t.Errorf("index.json lists an unnamed descriptor %v", d.Annotations)
		}
	}
	evs, err := l.History()
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d descriptors in the history file, want 1 event", len(evs))
	}
	if _, named := evs[0].Annotations[catalog.AnnotationRefName]; named {
		t.Errorf("the event has a ref name: %v", evs[0].Annotations)
	}
	d := evs[0]
	if d.ArtifactType != EventArtifactType || d.Annotations[AnnotationSubject] != digestOf(t, imgs["1.0.0"]) ||
		d.Annotations[AnnotationEventAction] != "promote" || d.Annotations[AnnotationEventStage] != "prod" ||
		d.Annotations[AnnotationEventTime] != "2025-03-01T12:00:00Z" || d.Annotations[AnnotationEventActor] != "ann" {
		t.Errorf("event descriptor = %+v", d)
	}
	raw := readFile(t, l.BlobPath(d.Digest))
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest.String() != digestOf(t, imgs["1.0.0"]) || m.ArtifactType != EventArtifactType ||
		m.Config.MediaType != "application/vnd.oci.empty.v1+json" || m.Annotations[AnnotationEventAction] != "promote" {
		t.Errorf("event manifest = %s", raw)
	}
	// go-containerregistry's reader and validator accept the layout.
	validateLayout(t, dir)
}

// TestLayoutStoreConcurrentPromotions races two layout values, as two
// processes would, promoting two versions into one stage.
func TestLayoutStoreConcurrentPromotions(t *testing.T) {
	for i := range 20 {
		dir := t.TempDir()
		l := openLayout(t, dir)
		imgs := bakeVersions(t, l, "1.0.0", "1.1.0", "1.2.0")
		stores := [2]catalog.Store{layoutStore(openLayout(t, dir)), layoutStore(openLayout(t, dir))}
		prev := i%2 == 0
		if prev {
			mustPromote(t, stores[0], "1.0.0", catalog.StageSpec{Name: "prod"}, "old", testTime(0))
		}
		winner := checkRace(t, stores, entries(t, stores[0]), i, prev, func(v string) string { return digestOf(t, imgs[v]) })
		if got := layoutTag(t, l, "prod"); got != digestOf(t, imgs[winner]) {
			t.Errorf("round %d: hello:prod = %s, want %s's digest", i, got, winner)
		}
	}
}

// TestLayoutStorePromoteFinishesAfterACrash commits the event alone, as a
// process that died before tagging would have left it, then promotes.
func TestLayoutStorePromoteFinishesAfterACrash(t *testing.T) {
	l := openLayout(t, t.TempDir())
	imgs := bakeVersions(t, l, "1.0.0", "1.1.0")
	s := layoutStore(l)
	ctx := context.Background()
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "prod"}, "ann", testTime(0))
	ev := promoteEvent("1.1.0", "prod", "bob", testTime(time.Hour))
	pe, err := checkEvent(ev, catalog.ActionPromote, "prod")
	if err != nil {
		t.Fatal(err)
	}
	err = s.update(ctx, func(tx *Tx, st *layoutState) error {
		v, err := st.find(catalog.Entry{Image: catalog.Image{Ref: catalog.Ref{Version: "1.1.0"}}}, l.Dir())
		if err != nil {
			return err
		}
		return s.writeEvent(tx, v, pe)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Half done: 1.1.0 claims prod, the tag is still on 1.0.0.
	if got := layoutTag(t, l, "prod"); got != digestOf(t, imgs["1.0.0"]) {
		t.Fatalf("hello:prod = %s", got)
	}
	if err := s.Promote(ctx, entryOf(t, entries(t, s), "1.1.0"), catalog.StageSpec{Name: "prod"}, ev); err != nil {
		t.Fatal(err)
	}
	es := entries(t, s)
	if got := layoutTag(t, l, "prod"); got != digestOf(t, imgs["1.1.0"]) {
		t.Errorf("hello:prod = %s after resuming", got)
	}
	if got := actions(entryOf(t, es, "1.1.0")); !slices.Equal(got, []string{"bake", "promote:prod"}) {
		t.Errorf("1.1.0 history = %v", got)
	}
	if got := actions(entryOf(t, es, "1.0.0")); !slices.Equal(got, []string{"bake", "promote:prod", "demote:prod"}) {
		t.Errorf("1.0.0 history = %v", got)
	}
}

// TestSkopeoReadsStageTag checks that a layout with stage tags and event
// artifacts stays readable by containers/image tools by name.
func TestSkopeoReadsStageTag(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		needPeer(t, "skopeo is not installed")
	}
	dir := t.TempDir()
	l := openLayout(t, dir)
	imgs := bakeVersions(t, l, "1.0.0", "1.1.0")
	s := layoutStore(l)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "prod"}, "ann", testTime(0))
	mustPromote(t, s, "1.1.0", catalog.StageSpec{Name: "prod"}, "ann", testTime(time.Hour))
	for ref, img := range map[string]v1.Image{"hello:prod": imgs["1.1.0"], "hello:1.0.0": imgs["1.0.0"]} {
		out, err := exec.Command(skopeo, "inspect", "--raw", "oci:"+dir+":"+ref).Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v: %s", ref, err, stderr(err))
		}
		raw, _ := img.RawManifest()
		if !bytes.Equal(bytes.TrimSpace(out), bytes.TrimSpace(raw)) {
			t.Errorf("skopeo read %s as\n%s\nwant\n%s", ref, out, raw)
		}
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(skopeo, "copy", "--quiet", "oci:"+dir+":hello:prod", "oci:"+dst+":hello:prod").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v: %s", err, out)
	}
	validateLayout(t, dst)
}
