package ami

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sync/errgroup"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/progress"
)

// copyStep copies the AMI to every other region of the recipe, a bounded
// number at once, each with its own progress step, and tags each copy and
// its snapshots like the original.
type copyStep struct{}

func (copyStep) Name() string { return "copy AMI" }

func (copyStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(st.b.copyConcurrency)
	for _, region := range st.plan.CopyRegions() {
		g.Go(func() error {
			ps := st.rep.Step("copy to " + region)
			err := copyTo(gctx, st, region)
			ps.Done(err)
			return err
		})
	}
	return g.Wait()
}

func copyTo(ctx context.Context, st *bakeState, region string) error {
	m, br := st.m, st.plan.BuildRegion
	src := st.image(br)
	img, err := st.b.ops.Copy(ctx, catalogami.CopyRequest{
		Source:      catalogami.Image{Region: br, ImageID: src.ImageID, Name: st.amiName},
		Region:      region,
		Description: st.description(),
		Encrypted:   m.Encrypted,
		KMSKeyID:    m.RegionKMSKeyIDs[region],
		Tags:        st.baseTags(),
		Timeout:     st.b.timeout(m.Timeouts.Copy, DefaultCopyTimeout),
		Started:     func(id string) { st.setImage(region, id) },
	})
	if err != nil {
		return err
	}
	st.setSnapshots(region, img.Snapshots)
	return st.b.ops.Tag(ctx, region, append([]string{img.ImageID}, img.Snapshots...), st.catalogTags())
}

// Cleanup deregisters the copies and deletes their snapshots in every copy
// region when the bake did not finish, pending copies included.
func (copyStep) Cleanup(ctx context.Context, st *bakeState, failed bool) error {
	if !failed || st.keep(failed) {
		return nil
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, region := range st.plan.CopyRegions() {
		wg.Go(func() {
			if err := st.removeImages(ctx, region); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
