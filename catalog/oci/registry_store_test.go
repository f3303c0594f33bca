package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pushVersions pushes bakery images of versions into repo, tagged with
// their version, all created at the same time, and returns them.
func pushVersions(t *testing.T, repo name.Repository, versions ...string) map[string]v1.Image {
	t.Helper()
	imgs := map[string]v1.Image{}
	for _, v := range versions {
		imgs[v] = bakedImage(t, v, "2025-02-01T00:00:00Z")
		push(t, repo, v, imgs[v])
	}
	return imgs
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func mustPromote(t *testing.T, s catalog.Store, version string, spec catalog.StageSpec, actor string, at time.Time) {
	t.Helper()
	e := entryOf(t, entries(t, s), version)
	if err := s.Promote(context.Background(), e, spec, promoteEvent(version, spec.Name, actor, at)); err != nil {
		t.Fatalf("Promote %s to %s: %v", version, spec.Name, err)
	}
}

func TestRegistryStoreEntries(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	imgs := map[string]v1.Image{
		"1.0.0":  bakedImage(t, "1.0.0", "2025-01-01T00:00:00Z"),
		"1.10.0": bakedImage(t, "1.10.0", "2025-02-01T00:00:00Z"),
		"1.1.0":  bakedImage(t, "1.1.0", "2025-02-01T00:00:00Z"),
	}
	for v, img := range imgs {
		push(t, repo, v, img)
	}
	// Neither is a version: "latest" was never promoted into, "other"
	// is another recipe's image.
	push(t, repo, "latest", imgs["1.10.0"])
	push(t, repo, "other", randomImage(t, map[string]string{
		catalog.AnnotationRecipe: "else", catalog.AnnotationArtifact: testArtifact, catalog.AnnotationVersion: "other"}))
	s := newStore(t, repo)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(0))
	mustPromote(t, s, "1.1.0", catalog.StageSpec{Name: "dev"}, "bob", testTime(time.Hour))
	mustPromote(t, s, "1.1.0", catalog.StageSpec{Name: "prod"}, "cy", testTime(2*time.Hour))

	tr.reset()
	es := entries(t, s)
	if got, want := versionsOf(es), []string{"1.0.0", "1.1.0", "1.10.0"}; !slices.Equal(got, want) {
		t.Fatalf("versions = %v, want %v (oldest first: by creation, then by number)", got, want)
	}
	for _, e := range es {
		img := imgs[e.Version]
		if e.Digest != digestOf(t, img) || e.Reference != repo.Tag(e.Version).String() || e.Size != imageSize(t, img) ||
			e.Kind != KindContainer || e.Recipe != testRecipe || e.Artifact != testArtifact || e.BakeKey != "sha256:key-"+e.Version {
			t.Errorf("entry %s = %+v", e.Version, e.Image)
		}
		if want := []catalog.Location{{Where: repo.Name(), ID: e.Digest}}; !reflect.DeepEqual(e.Locations, want) {
			t.Errorf("%s locations = %v, want %v", e.Version, e.Locations, want)
		}
	}
	want := map[string]catalog.StageEntry{
		"dev":  {Since: testTime(time.Hour), By: "bob"},
		"prod": {Since: testTime(2 * time.Hour), By: "cy"},
	}
	if got := entryOf(t, es, "1.1.0").Stages; !reflect.DeepEqual(got, want) {
		t.Errorf("1.1.0 stages = %v, want %v", got, want)
	}
	for _, v := range []string{"1.0.0", "1.10.0"} {
		if got := entryOf(t, es, v).Stages; len(got) != 0 {
			t.Errorf("%s stages = %v, want none", v, got)
		}
	}
	old := entryOf(t, es, "1.0.0")
	if got, want := actions(old), []string{"bake", "promote:dev", "demote:dev"}; !slices.Equal(got, want) {
		t.Errorf("1.0.0 history = %v, want %v", got, want)
	}
	if d := old.Events[2]; d.Reason != "replaced by 1.1.0" || !d.Time.Equal(testTime(time.Hour)) || d.Actor != "bob" || d.Version != "1.0.0" || d.Recipe != testRecipe {
		t.Errorf("demote event = %+v", d)
	}
	if b := old.Events[0]; !b.Time.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("synthesized bake event = %+v, want the created annotation's time", b)
	}

	// The cost: one tag listing, one manifest GET per tag (3 versions,
	// dev, prod, latest, other) and one referrers call per version; no
	// blob, no HEAD per layer.
	for _, r := range tr.requests() {
		ok := r == "GET /v2/?" || strings.HasPrefix(r, "GET /v2/hello/tags/list") ||
			strings.HasPrefix(r, "GET /v2/hello/manifests/") || strings.HasPrefix(r, "GET /v2/hello/referrers/")
		if !ok {
			t.Errorf("unexpected request %s", r)
		}
	}
	if n := tr.count("GET", "/manifests/"); n != 7 {
		t.Errorf("%d manifest GETs, want 7 (one per tag)", n)
	}
	if n := tr.count("GET", "/referrers/"); n != 3 {
		t.Errorf("%d referrers calls, want 3 (one per version)", n)
	}
}

func TestRegistryStoreEmptyRepository(t *testing.T) {
	tr := newTestRegistry(t, true)
	if es := entries(t, newStore(t, tr.repo(t, "nothing/here"))); len(es) != 0 {
		t.Errorf("entries of a missing repository = %v", es)
	}
}

func TestRegistryStorePromoteIsIdempotentAndDemotes(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	imgs := pushVersions(t, repo, "1.0.0", "1.1.0")
	s := newStore(t, repo)
	ctx := context.Background()
	dev := catalog.StageSpec{Name: "dev"}

	ev := promoteEvent("1.0.0", "dev", "ann", testTime(0))
	e := entryOf(t, entries(t, s), "1.0.0")
	if err := s.Promote(ctx, e, dev, ev); err != nil {
		t.Fatal(err)
	}
	if got := tagged(t, repo, "dev"); got != digestOf(t, imgs["1.0.0"]) {
		t.Fatalf("hello:dev = %s, want 1.0.0's digest", got)
	}
	before := entries(t, s)

	// Again, the same event (a retry) and a later one (already in the
	// stage): nothing is written, Since stays.
	tr.reset()
	if err := s.Promote(ctx, e, dev, ev); err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(ctx, e, dev, promoteEvent("1.0.0", "dev", "ann", testTime(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if w := tr.writes(); len(w) != 0 {
		t.Errorf("promoting again wrote %v", w)
	}
	if after := entries(t, s); !reflect.DeepEqual(after, before) {
		t.Errorf("entries changed:\n%+v\nwant\n%+v", after, before)
	}

	// Another version takes the stage: the previous holder is demoted.
	mustPromote(t, s, "1.1.0", dev, "bob", testTime(time.Hour))
	es := entries(t, s)
	if got := holders(es, "dev"); !slices.Equal(got, []string{"1.1.0"}) {
		t.Fatalf("dev holders = %v", got)
	}
	if got := entryOf(t, es, "1.1.0").Stages["dev"]; !got.Since.Equal(testTime(time.Hour)) || got.By != "bob" {
		t.Errorf("1.1.0 in dev = %+v", got)
	}
	old := entryOf(t, es, "1.0.0")
	if got, want := actions(old), []string{"bake", "promote:dev", "demote:dev"}; !slices.Equal(got, want) {
		t.Errorf("1.0.0 history = %v, want %v", got, want)
	}
	// Newest first is the reverse.
	newest := slices.Clone(old.Events)
	slices.Reverse(newest)
	if !slices.IsSortedFunc(newest, func(a, b catalog.Event) int { return b.Time.Compare(a.Time) }) {
		t.Errorf("history is not in time order: %+v", old.Events)
	}
	if got := tagged(t, repo, "dev"); got != digestOf(t, imgs["1.1.0"]) {
		t.Errorf("hello:dev = %s, want 1.1.0's digest", got)
	}

	// A promotion older than the holder's is recorded, demoted, and
	// reported as superseded; the stage does not move.
	err := s.Promote(ctx, old, dev, promoteEvent("1.0.0", "dev", "ann", testTime(30*time.Minute)))
	if !errors.Is(err, ErrSuperseded) || !strings.Contains(err.Error(), "1.1.0") {
		t.Errorf("older promotion: err = %v, want ErrSuperseded naming 1.1.0", err)
	}
	es = entries(t, s)
	if got := holders(es, "dev"); !slices.Equal(got, []string{"1.1.0"}) {
		t.Errorf("dev holders = %v", got)
	}
	if got := len(findEvents(entryOf(t, es, "1.0.0"), catalog.ActionDemote, "dev")); got != 1 {
		t.Errorf("1.0.0 has %d demote events, want 1 (same winner, same event)", got)
	}
}

func TestRegistryStoreSecondStoreSeesTheSameState(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	pushVersions(t, repo, "1.0.0", "1.1.0", "1.2.0")
	first := newStore(t, repo)
	mustPromote(t, first, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(0))
	mustPromote(t, first, "1.1.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(time.Hour))
	mustPromote(t, first, "1.1.0", catalog.StageSpec{Name: "prod", Repository: tr.host + "/prod/hello"}, "ann", testTime(2*time.Hour))
	e := entryOf(t, entries(t, first), "1.2.0")
	if err := first.Revoke(context.Background(), e, revokeEvent(catalog.ActionRevoke, "1.2.0", "CVE", testTime(3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	// Another machine: a new store, a new HTTP client, no shared memory.
	second, err := NewRegistryStore(repo.Name(), testRecipe, testArtifact, WithKeychain(anonymous), WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := entries(t, first), entries(t, second); !reflect.DeepEqual(a, b) {
		t.Errorf("a second store sees\n%+v\nthe first\n%+v", b, a)
	}
}

func TestRegistryStorePromoteMountsIntoStageRepository(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	imgs := pushVersions(t, repo, "1.0.0")
	s := newStore(t, repo)
	spec := catalog.StageSpec{Name: "prod", Repository: tr.host + "/prod/hello"}
	stageRepo := tr.repo(t, "prod/hello")

	tr.reset()
	mustPromote(t, s, "1.0.0", spec, "ann", testTime(0))

	// Every blob (3 layers, the config) was mounted, none uploaded.
	var mounts int
	for _, r := range tr.requests() {
		if !strings.Contains(r, "/v2/prod/hello/blobs/") {
			continue
		}
		switch {
		case strings.HasPrefix(r, "HEAD "):
		case strings.HasPrefix(r, "POST ") && strings.Contains(r, "mount=") && strings.Contains(r, "from=hello"):
			mounts++
		default:
			t.Errorf("blob upload into the stage repository: %s", r)
		}
	}
	if mounts != 4 {
		t.Errorf("%d blobs mounted, want 4 (3 layers and the config)", mounts)
	}
	if up := tr.uploaded("prod/hello"); len(up) != 0 {
		t.Errorf("uploaded %v into prod/hello", up)
	}
	// Same bytes, same digest; the stage tag is in the stage repository only.
	raw, _ := imgs["1.0.0"].RawManifest()
	got, err := remote.Get(stageRepo.Tag("prod"), remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Manifest, raw) || got.Digest.String() != digestOf(t, imgs["1.0.0"]) {
		t.Errorf("prod/hello:prod is %s, not the baked manifest", got.Digest)
	}
	if d := tagged(t, repo, "prod"); d != "" {
		t.Errorf("hello:prod = %s, want no tag in the image's own repository", d)
	}
	e := entryOf(t, entries(t, s), "1.0.0")
	if _, ok := e.Stages["prod"]; !ok {
		t.Errorf("1.0.0 stages = %v, want prod", e.Stages)
	}
	wantLocs := []catalog.Location{{Where: repo.Name(), ID: e.Digest}, {Where: stageRepo.Name(), ID: e.Digest}}
	if !reflect.DeepEqual(e.Locations, wantLocs) {
		t.Errorf("locations = %v, want %v", e.Locations, wantLocs)
	}

	// Again: the copy is there, nothing is written.
	tr.reset()
	mustPromote(t, s, "1.0.0", spec, "ann", testTime(0))
	if w := tr.writes(); len(w) != 0 {
		t.Errorf("promoting again wrote %v", w)
	}
}

func TestRegistryStorePromoteToAnotherRegistry(t *testing.T) {
	src := newTestRegistry(t, true)
	dst := newTestRegistry(t, true)
	repo := src.repo(t, "hello")
	imgs := pushVersions(t, repo, "1.0.0")
	img := imgs["1.0.0"]
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	// The other registry already has the first layer.
	stageRepo := dst.repo(t, "prod/hello")
	shared, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(stageRepo, shared, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatal(err)
	}
	dst.reset()
	s := newStore(t, repo)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "prod", Repository: stageRepo.Name()}, "ann", testTime(0))

	want := []string{m.Config.Digest.String(), m.Layers[1].Digest.String(), m.Layers[2].Digest.String()}
	slices.Sort(want)
	if got := dst.uploaded("prod/hello"); !slices.Equal(got, want) {
		t.Errorf("uploaded %v, want only the missing blobs %v", got, want)
	}
	if got := tagged(t, stageRepo, "prod"); got != digestOf(t, img) {
		t.Errorf("prod tag in the other registry = %s, want %s", got, digestOf(t, img))
	}
	e := entryOf(t, entries(t, s), "1.0.0")
	wantLocs := []catalog.Location{{Where: repo.Name(), ID: e.Digest}, {Where: stageRepo.Name(), ID: e.Digest}}
	if _, ok := e.Stages["prod"]; !ok || !reflect.DeepEqual(e.Locations, wantLocs) {
		t.Errorf("entry stages %v locations %v, want prod and %v", e.Stages, e.Locations, wantLocs)
	}
}

func TestRegistryStoreRevokeAndUnrevoke(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	pushVersions(t, repo, "1.0.0")
	s := newStore(t, repo)
	ctx := context.Background()
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(0))
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "prod", Repository: tr.host + "/prod/hello"}, "ann", testTime(time.Hour))

	e := entryOf(t, entries(t, s), "1.0.0")
	rev := revokeEvent(catalog.ActionRevoke, "1.0.0", "CVE-2025-1234", testTime(2*time.Hour))
	if err := s.Revoke(ctx, e, rev); err != nil {
		t.Fatal(err)
	}
	checkEmptied(t, repo, "dev", e.Digest, "CVE-2025-1234")
	checkEmptied(t, tr.repo(t, "prod/hello"), "prod", e.Digest, "CVE-2025-1234")
	e = entryOf(t, entries(t, s), "1.0.0")
	if !e.Revoked || e.RevokeReason != "CVE-2025-1234" || len(e.Stages) != 0 {
		t.Errorf("after revoke: revoked %v reason %q stages %v", e.Revoked, e.RevokeReason, e.Stages)
	}
	// The tag is the version tag, which stays: a revoked image is kept.
	if d := tagged(t, repo, "1.0.0"); d != e.Digest {
		t.Errorf("hello:1.0.0 = %q, want the image kept", d)
	}

	tr.reset()
	if err := s.Revoke(ctx, e, rev); err != nil {
		t.Fatal(err)
	}
	if w := tr.writes(); len(w) != 0 {
		t.Errorf("revoking again wrote %v", w)
	}
	err := s.Promote(ctx, e, catalog.StageSpec{Name: "dev"}, promoteEvent("1.0.0", "dev", "ann", testTime(3*time.Hour)))
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("promoting a revoked image: err = %v", err)
	}

	if err := s.Unrevoke(ctx, e, revokeEvent(catalog.ActionUnrevoke, "1.0.0", "false alarm", testTime(4*time.Hour))); err != nil {
		t.Fatal(err)
	}
	e = entryOf(t, entries(t, s), "1.0.0")
	if e.Revoked || e.RevokeReason != "" || len(e.Stages) != 0 {
		t.Errorf("after unrevoke: revoked %v reason %q stages %v", e.Revoked, e.RevokeReason, e.Stages)
	}
	if got, want := actions(e), []string{"bake", "promote:dev", "promote:prod", "revoke", "unrevoke"}; !slices.Equal(got, want) {
		t.Errorf("history = %v, want %v", got, want)
	}
	// Unrevoked, it may enter a stage again.
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(5*time.Hour))
	if got := holders(entries(t, s), "dev"); !slices.Equal(got, []string{"1.0.0"}) {
		t.Errorf("dev holders = %v", got)
	}
}

// TestRegistryStoreWithoutReferrersAPI checks a registry without the OCI
// 1.1 referrers API: events live in the referrers fallback tag, which is
// not a version.
func TestRegistryStoreWithoutReferrersAPI(t *testing.T) {
	tr := newTestRegistry(t, false)
	repo := tr.repo(t, "hello")
	imgs := pushVersions(t, repo, "1.0.0", "1.1.0")
	s := newStore(t, repo)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(0))
	mustPromote(t, s, "1.1.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(time.Hour))

	tags, err := remote.List(repo, remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatal(err)
	}
	fallback := strings.Replace(digestOf(t, imgs["1.0.0"]), ":", "-", 1)
	if !slices.Contains(tags, fallback) {
		t.Fatalf("tags %v, want the referrers fallback tag %s", tags, fallback)
	}
	es := entries(t, s)
	if got := versionsOf(es); !slices.Equal(got, []string{"1.0.0", "1.1.0"}) {
		t.Errorf("versions = %v", got)
	}
	if got, want := actions(entryOf(t, es, "1.0.0")), []string{"bake", "promote:dev", "demote:dev"}; !slices.Equal(got, want) {
		t.Errorf("1.0.0 history = %v, want %v", got, want)
	}
	if got := holders(es, "dev"); !slices.Equal(got, []string{"1.1.0"}) {
		t.Errorf("dev holders = %v", got)
	}
}

// TestRegistryStoreConcurrentPromotions races two stores promoting two
// versions into one stage: exactly one version ends in the stage, the one
// with the newer promotion (equal times: the greater digest), both
// promotions are in the history, and the loser and the previous holder
// are demoted.
func TestRegistryStoreConcurrentPromotions(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", api), func(t *testing.T) {
			tr := newTestRegistry(t, api)
			for i := range 20 {
				repo := tr.repo(t, fmt.Sprintf("race%d/hello", i))
				imgs := pushVersions(t, repo, "1.0.0", "1.1.0", "1.2.0")
				stores := [2]catalog.Store{newStore(t, repo), newStore(t, repo)}
				prev := i%2 == 0
				if prev {
					mustPromote(t, stores[0], "1.0.0", catalog.StageSpec{Name: "prod"}, "old", testTime(0))
				}
				winner := checkRace(t, stores, entries(t, stores[0]), i, prev, func(v string) string { return digestOf(t, imgs[v]) })
				if got := tagged(t, repo, "prod"); got != digestOf(t, imgs[winner]) {
					t.Errorf("round %d: hello:prod = %s, want %s's digest", i, got, winner)
				}
			}
		})
	}
}

// checkRace promotes 1.1.0 and 1.2.0 into prod from stores[0] and
// stores[1] at the same moment, checks the outcome and returns the winning
// version. Round i picks the promotion times: equal, the first newer, or
// the second newer.
func checkRace(t *testing.T, stores [2]catalog.Store, es []catalog.Entry, i int, prev bool, digest func(string) string) string {
	t.Helper()
	versions := [2]string{"1.1.0", "1.2.0"}
	times := [2]time.Time{testTime(time.Hour), testTime(time.Hour)}
	switch i % 3 {
	case 1:
		times[0] = times[0].Add(time.Second)
	case 2:
		times[1] = times[1].Add(time.Second)
	}
	winner, loser := 0, 1
	if times[1].After(times[0]) || (times[1].Equal(times[0]) && digest(versions[1]) > digest(versions[0])) {
		winner, loser = 1, 0
	}
	var errs [2]error
	start := make(chan struct{})
	var wg sync.WaitGroup
	for k := range 2 {
		e := entryOf(t, es, versions[k])
		ev := promoteEvent(versions[k], "prod", fmt.Sprintf("p%d", k), times[k])
		wg.Go(func() {
			<-start
			errs[k] = stores[k].Promote(context.Background(), e, catalog.StageSpec{Name: "prod"}, ev)
		})
	}
	close(start)
	wg.Wait()
	if errs[winner] != nil {
		t.Errorf("round %d: the winner %s: %v", i, versions[winner], errs[winner])
	}
	// The loser finished either after seeing the winner's promotion
	// (superseded) or before it existed (it held the stage until the
	// winner took it).
	if errs[loser] != nil && !errors.Is(errs[loser], ErrSuperseded) {
		t.Errorf("round %d: the loser %s: err = %v, want nil or ErrSuperseded", i, versions[loser], errs[loser])
	}
	es = entries(t, stores[0])
	if got := holders(es, "prod"); !slices.Equal(got, []string{versions[winner]}) {
		t.Fatalf("round %d: prod holders = %v, want [%s]", i, got, versions[winner])
	}
	for k := range 2 {
		if n := len(findEvents(entryOf(t, es, versions[k]), catalog.ActionPromote, "prod")); n != 1 {
			t.Errorf("round %d: %s has %d promote events, want 1", i, versions[k], n)
		}
	}
	lost := findEvents(entryOf(t, es, versions[loser]), catalog.ActionDemote, "prod")
	if len(lost) != 1 || lost[0].Reason != "replaced by "+versions[winner] || !lost[0].Time.Equal(times[winner]) {
		t.Errorf("round %d: the loser's demote events = %+v", i, lost)
	}
	if n := len(findEvents(entryOf(t, es, versions[winner]), catalog.ActionDemote, "prod")); n != 0 {
		t.Errorf("round %d: the winner has %d demote events", i, n)
	}
	if prev {
		// Replaced by whichever promotion its demoter saw first. Two
		// processes that each saw it still in the stage may both record
		// its demotion (a registry has no compare-and-swap): harmless.
		d := findEvents(entryOf(t, es, "1.0.0"), catalog.ActionDemote, "prod")
		if len(d) == 0 || len(d) > 2 {
			t.Errorf("round %d: the previous holder's demote events = %+v", i, d)
		}
		for _, ev := range d {
			if ev.Reason != "replaced by 1.1.0" && ev.Reason != "replaced by 1.2.0" {
				t.Errorf("round %d: the previous holder's demote event %+v", i, ev)
			}
		}
	}
	return versions[winner]
}

// TestRegistryStorePromoteResumesAfterACrash interrupts a promotion into a
// stage repository after every possible number of requests (the copy, the
// event, the tag, the demotion), then runs it again from a healthy store:
// the end state is always the same, with no duplicate event.
func TestRegistryStorePromoteResumesAfterACrash(t *testing.T) {
	tr := newTestRegistry(t, true)
	ctx := context.Background()
	for n := 1; ; n++ {
		if n > 300 {
			t.Fatal("the promotion never completed")
		}
		repo := tr.repo(t, fmt.Sprintf("crash%d/hello", n))
		stageRepo := tr.repo(t, fmt.Sprintf("crash%d/stage", n))
		spec := catalog.StageSpec{Name: "prod", Repository: stageRepo.Name()}
		imgs := pushVersions(t, repo, "1.0.0", "1.1.0")
		healthy := newStore(t, repo)
		mustPromote(t, healthy, "1.0.0", spec, "ann", testTime(0))
		e := entryOf(t, entries(t, healthy), "1.1.0")
		ev := promoteEvent("1.1.0", "prod", "bob", testTime(time.Hour))

		crashing := newStore(t, repo, WithTransport(&failingTransport{n: int64(n)}))
		err := crashing.Promote(ctx, e, spec, ev)
		if err == nil {
			if n < 10 {
				t.Fatalf("the promotion took only %d requests", n)
			}
			t.Logf("the promotion takes %d requests; a crash after each of the first %d was resumed", n, n-1)
			break // every crash point was tried
		}
		if !strings.Contains(err.Error(), errInjected.Error()) {
			t.Fatalf("crash after %d requests: %v", n, err)
		}
		if err := healthy.Promote(ctx, e, spec, ev); err != nil {
			t.Fatalf("resuming after a crash after %d requests: %v", n, err)
		}
		es := entries(t, healthy)
		if got := holders(es, "prod"); !slices.Equal(got, []string{"1.1.0"}) {
			t.Errorf("crash after %d: prod holders = %v", n, got)
		}
		if got := tagged(t, stageRepo, "prod"); got != digestOf(t, imgs["1.1.0"]) {
			t.Errorf("crash after %d: stage tag = %s", n, got)
		}
		if got := actions(entryOf(t, es, "1.1.0")); !slices.Equal(got, []string{"bake", "promote:prod"}) {
			t.Errorf("crash after %d: 1.1.0 history = %v", n, got)
		}
		if got := actions(entryOf(t, es, "1.0.0")); !slices.Equal(got, []string{"bake", "promote:prod", "demote:prod"}) {
			t.Errorf("crash after %d: 1.0.0 history = %v", n, got)
		}
	}
}

// TestRegistryStorePromoteFinishesHalfDoneSteps runs Promote's first steps
// by hand (the copy; the copy and the event) as a crashed process would
// have left them, then Promote.
func TestRegistryStorePromoteFinishesHalfDoneSteps(t *testing.T) {
	for _, steps := range []string{"copy", "copy+event"} {
		t.Run(steps, func(t *testing.T) {
			tr := newTestRegistry(t, true)
			repo := tr.repo(t, "hello")
			stageRepo := tr.repo(t, "prod/hello")
			imgs := pushVersions(t, repo, "1.0.0")
			s := newStore(t, repo)
			ctx := context.Background()
			ss, err := s.session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st, err := ss.read()
			if err != nil {
				t.Fatal(err)
			}
			v := st.versions[0]
			if err := ss.copyTo(v, stageRepo); err != nil {
				t.Fatal(err)
			}
			ev := promoteEvent("1.0.0", "prod", "ann", testTime(0))
			if steps == "copy+event" {
				pe, err := checkEvent(ev, catalog.ActionPromote, "prod")
				if err != nil {
					t.Fatal(err)
				}
				pe.Repository = stageRepo.Name()
				if err := ss.writeEvent(v, pe); err != nil {
					t.Fatal(err)
				}
			}
			tr.reset()
			e := entryOf(t, entries(t, s), "1.0.0")
			if err := s.Promote(ctx, e, catalog.StageSpec{Name: "prod", Repository: stageRepo.Name()}, ev); err != nil {
				t.Fatal(err)
			}
			if up := tr.uploaded("prod/hello"); len(up) != 0 || tr.count("POST", "/v2/prod/hello/blobs/") != 0 {
				t.Errorf("the copy was done, yet Promote sent blobs: %v", tr.writes())
			}
			if got := tagged(t, stageRepo, "prod"); got != digestOf(t, imgs["1.0.0"]) {
				t.Errorf("stage tag = %s", got)
			}
			if got := actions(entryOf(t, entries(t, s), "1.0.0")); !slices.Equal(got, []string{"bake", "promote:prod"}) {
				t.Errorf("history = %v", got)
			}
		})
	}
}

func TestRegistryStoreRefusesBadRequests(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	pushVersions(t, repo, "1.0.0", "1.1.0")
	s := newStore(t, repo)
	ctx := context.Background()
	e := entryOf(t, entries(t, s), "1.0.0")
	at := testTime(0)
	for _, tc := range []struct {
		name string
		spec catalog.StageSpec
		ev   catalog.Event
		e    catalog.Entry
		want string
	}{
		{"no time", catalog.StageSpec{Name: "dev"}, catalog.Event{Action: catalog.ActionPromote}, e, "no time"},
		{"wrong action", catalog.StageSpec{Name: "dev"}, catalog.Event{Action: catalog.ActionRevoke, Time: at}, e, "action"},
		{"other stage", catalog.StageSpec{Name: "dev"}, promoteEvent("1.0.0", "prod", "a", at), e, "stage"},
		{"bad stage name", catalog.StageSpec{Name: "no/slash"}, catalog.Event{Time: at}, e, "cannot be a tag"},
		{"stage named like a version", catalog.StageSpec{Name: "1.1.0"}, catalog.Event{Time: at}, e, "version tag"},
		{"unknown version", catalog.StageSpec{Name: "dev"}, catalog.Event{Time: at}, catalog.Entry{Image: catalog.Image{Ref: catalog.Ref{Version: "9.9.9"}}}, "no version 9.9.9"},
		{"stale digest", catalog.StageSpec{Name: "dev"}, catalog.Event{Time: at}, catalog.Entry{Image: catalog.Image{Ref: catalog.Ref{Version: "1.0.0"}, Digest: "sha256:" + strings.Repeat("0", 64)}}, "re-read"},
		{"bad stage repository", catalog.StageSpec{Name: "dev", Repository: "UPPER/case"}, catalog.Event{Time: at}, e, "stage repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr.reset()
			err := s.Promote(ctx, tc.e, tc.spec, tc.ev)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "promoting web@") {
				t.Errorf("err = %v, want one starting with \"promoting web@\" and mentioning %q", err, tc.want)
			}
			if w := tr.writes(); len(w) != 0 {
				t.Errorf("a refused promotion wrote %v", w)
			}
		})
	}
	if _, err := NewRegistryStore("not a repo", testRecipe, testArtifact); err == nil {
		t.Error("NewRegistryStore accepted an invalid repository")
	}
}
