package ami

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/internal/awsx"
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
	m, src := st.m, st.image(st.plan.BuildRegion)
	in := &ec2.CopyImageInput{
		SourceImageId: aws.String(src.ImageID),
		SourceRegion:  aws.String(st.plan.BuildRegion),
		Name:          aws.String(st.amiName),
		Description:   aws.String(st.description()),
		// moto 5.2.5 ignores CopyImage's TagSpecifications (and
		// Encrypted and KmsKeyId); the CreateTags below covers it.
		TagSpecifications: tagSpecs(st.baseTags(), ec2types.ResourceTypeImage, ec2types.ResourceTypeSnapshot),
	}
	if m.Encrypted {
		in.Encrypted = aws.Bool(true)
		if k := m.RegionKMSKeyIDs[region]; k != "" {
			in.KmsKeyId = aws.String(k)
		}
	}
	c := st.b.clients.EC2(region)
	out, err := c.CopyImage(ctx, in)
	if err != nil {
		return fmt.Errorf("copying AMI %s from %s to %s: %w", src.ImageID, st.plan.BuildRegion, region, awsx.ExplainError(err))
	}
	id := aws.ToString(out.ImageId)
	st.setImage(region, id)
	if err := st.b.createTags(ctx, region, []string{id}, st.baseTags()); err != nil {
		return err
	}
	snaps, err := st.b.waitImage(ctx, region, id)
	if err != nil {
		return err
	}
	st.setSnapshots(region, snaps)
	return st.b.createTags(ctx, region, append([]string{id}, snaps...), st.catalogTags())
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
