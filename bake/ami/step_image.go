package ami

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
)

// createImageStep creates the AMI from the stopped builder and waits until
// it is available.
type createImageStep struct{}

func (createImageStep) Name() string { return "create AMI" }

func (createImageStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	region := st.plan.BuildRegion
	c := st.b.clients.EC2(region)
	// The snapshots are tagged as soon as their ids are known, not with a
	// "snapshot" TagSpecification: moto 5.2.5 answers CreateImage with a
	// snapshot TagSpecification with HTTP 500 (NotImplementedError). Until
	// then cleanup and sweep find them through the AMI's block devices
	// and the "Created by CreateImage(...) for ami-..." description.
	out, err := c.CreateImage(ctx, &ec2.CreateImageInput{
		InstanceId:        aws.String(st.instanceID),
		Name:              aws.String(st.amiName),
		Description:       aws.String(st.description()),
		TagSpecifications: catalogami.TagSpecs(st.baseTags(), ec2types.ResourceTypeImage),
	})
	if err != nil {
		err = fmt.Errorf("creating AMI %q from %s in %s: %w", st.amiName, st.instanceID, region, awsx.ExplainError(err))
		if st.m.AMIName != "" {
			err = fmt.Errorf("%s: %w", st.m.Pos("ami_name"), err)
		}
		return err
	}
	id := aws.ToString(out.ImageId)
	st.setImage(region, id)
	img, err := st.b.ops.WaitAvailable(ctx, region, id, st.b.timeout(st.m.Timeouts.Image, DefaultImageTimeout))
	if err != nil {
		return err
	}
	st.setSnapshots(region, img.Snapshots)
	return st.b.ops.Tag(ctx, region, img.Snapshots, st.baseTags())
}

// Cleanup deregisters the AMI and deletes its snapshots when the bake did
// not finish.
func (createImageStep) Cleanup(ctx context.Context, st *bakeState, failed bool) error {
	if !failed || st.keep(failed) {
		return nil
	}
	return st.removeImages(ctx, st.plan.BuildRegion)
}

// removeImages deregisters every AMI of the bake in region and deletes
// their snapshots: the recorded ones and those found by tag, name and
// description, which covers a CreateImage or CopyImage whose answer was
// lost and a copy whose snapshot ids were not known yet.
func (st *bakeState) removeImages(ctx context.Context, region string) error {
	var known []string
	var snaps []string
	if rec := st.image(region); rec != nil {
		known = append(known, rec.ImageID)
		snaps = append(snaps, rec.Snapshots...)
	}
	imgs, found, err := st.b.bakeImages(ctx, st.bakeID, st.amiName, region, known...)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range found {
		snaps = appendNew(snaps, s.ID)
	}
	ids := known
	for _, img := range imgs {
		ids = appendNew(ids, img.ImageID)
	}
	for _, id := range ids {
		if err := st.b.ops.Deregister(ctx, region, id, nil); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range snaps {
		if err := st.b.ops.DeleteSnapshot(ctx, region, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
