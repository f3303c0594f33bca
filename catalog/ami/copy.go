package ami

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
)

// copyMissing copies v to each of regions it is not in, a bounded number
// at once, and adds the copies to v.
func (s *LifecycleStore) copyMissing(ctx context.Context, v *version, spec catalog.StageSpec) error {
	regions := spec.Regions
	var missing []string
	for _, r := range dedupe(regions) {
		if v.amis[r] == nil {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	src := v.amis[buildImage(v.images()).Region]
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.o.concurrency)
	for _, region := range missing {
		g.Go(func() error {
			l, err := s.copyTo(gctx, v, src, region, spec)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			v.amis[region] = l
			return nil
		})
	}
	return g.Wait()
}

// copyDescription is the description of a copy of src: it finds the copy
// again when a crash lost even its tags.
func copyDescription(src *located) string {
	return fmt.Sprintf("bakery %s %s (%s), copy of %s from %s", src.Recipe, src.Version, src.Artifact, src.ImageID, src.Region)
}

// IsUnfinishedCopy reports whether img is a copy a promotion (or
// Replicate) started of recipe's artifact that never finished: its
// description is the one copyTo gives a copy and it has no bake key,
// which copyTo writes last, once the copy is tagged.
func IsUnfinishedCopy(img Image, recipe, artifact string) bool {
	prefix := fmt.Sprintf("bakery %s %s (%s), copy of ", recipe, img.Tags[catalog.TagVersion], artifact)
	return img.BakeKey == "" && img.Tags[catalog.TagBakeKey] == "" && strings.HasPrefix(img.Description, prefix) &&
		img.Tags[catalog.TagRecipe] == recipe && img.Tags[catalog.TagArtifact] == artifact
}

// copyTo copies src, the build region's AMI of v, to region, or finishes
// the copy an earlier run started (see Promote), encrypted with the
// region's key: spec's, else the store's (WithEncryption).
func (s *LifecycleStore) copyTo(ctx context.Context, v *version, src *located, region string, spec catalog.StageSpec) (*located, error) {
	key := spec.KMSKeyIDs[region]
	if key == "" {
		key = s.o.kmsKeys[region]
	}
	img, err := s.ops.Copy(ctx, CopyRequest{
		Source:      src.Image,
		Region:      region,
		Description: copyDescription(src),
		Encrypted:   s.o.encrypted || key != "",
		KMSKeyID:    key,
		Tags: map[string]string{
			catalog.TagRecipe:   src.Tags[catalog.TagRecipe],
			catalog.TagArtifact: src.Tags[catalog.TagArtifact],
			catalog.TagVersion:  src.Tags[catalog.TagVersion],
			catalog.TagBakeID:   src.Tags[catalog.TagBakeID],
			catalog.TagCreated:  s.o.now().UTC().Format(time.RFC3339),
		},
		Timeout: s.o.copyTimeout,
	})
	if err != nil {
		return nil, err
	}
	l := &located{Image: img}
	if err := s.readSnapshots(ctx, l); err != nil {
		return nil, err
	}
	// An earlier run may have left stage marks the version has lost since.
	current := stagesOf(v.images())
	stale := map[string]*string{}
	for _, tags := range append([]map[string]string{l.Tags}, slices.Collect(maps.Values(l.snaps))...) {
		for k := range tags {
			if st, ok := strings.CutPrefix(k, TagStagePrefix); ok {
				if _, held := current[st]; !held {
					stale[k] = nil
				}
			}
		}
	}
	if len(stale) > 0 {
		if err := s.untag(ctx, l, stale); err != nil {
			return nil, err
		}
	}
	snapTags := map[string]string{}
	for k, val := range src.Tags {
		if k != catalog.TagBakeKey && k != TagRevoked && !isEventTag(k) && !strings.HasPrefix(k, TagStagePrefix) && !strings.HasPrefix(k, "aws:") {
			snapTags[k] = val
		}
	}
	for stage, m := range current {
		snapTags[StageTag(stage)] = m.String()
	}
	imgTags := maps.Clone(snapTags)
	for _, se := range historyOf(v.images()) {
		imgTags[se.key] = se.value
	}
	if err := s.tag(ctx, l, imgTags, snapTags); err != nil {
		return nil, err
	}
	done := map[string]string{catalog.TagBakeKey: src.BakeKey}
	if err := s.tag(ctx, l, done, done); err != nil {
		return nil, err
	}
	l.Image.Image = src.Image.Image
	l.Reference = l.ImageID
	return l, nil
}

// Replicate copies version to each of regions it is not in yet, from its
// build region's AMI (from another region's when that one is gone), with
// its tags, stage marks and history, the bake key last (see Promote for
// how a copy is made and resumed). It returns the version's AMI in each
// of regions, in that order. A bake uses it when a recipe names a region
// the version is not in: the same bytes are copied, nothing is baked
// again.
func (s *LifecycleStore) Replicate(ctx context.Context, version string, regions []string) ([]Image, error) {
	what := fmt.Sprintf("copying %s to %s", s.ref(version), strings.Join(regions, ", "))
	known, err := s.lookIn(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	all := dedupe(append(slices.Clone(known), regions...))
	v, err := s.load(ctx, version, all)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(v.amis) == 0 {
		return nil, fmt.Errorf("%s: no complete AMI of it in %s: bake it first", what, strings.Join(all, ", "))
	}
	if err := s.copyMissing(ctx, v, catalog.StageSpec{Regions: regions}); err != nil {
		return nil, fmt.Errorf("%s: %w (run it again to finish: it resumes the copies)", what, err)
	}
	out := make([]Image, 0, len(regions))
	for _, r := range dedupe(regions) {
		out = append(out, v.amis[r].Image)
	}
	return out, nil
}
