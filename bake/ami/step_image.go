package ami

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

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
		TagSpecifications: tagSpecs(st.baseTags(), ec2types.ResourceTypeImage),
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
	snaps, err := st.b.waitImage(ctx, region, id)
	if err != nil {
		return err
	}
	st.setSnapshots(region, snaps)
	return st.b.createTags(ctx, region, snaps, st.baseTags())
}

// Cleanup deregisters the AMI and deletes its snapshots when the bake did
// not finish.
func (createImageStep) Cleanup(ctx context.Context, st *bakeState, failed bool) error {
	if !failed || st.keep(failed) {
		return nil
	}
	return st.removeImages(ctx, st.plan.BuildRegion)
}

// waitImage waits until AMI id in region is available and returns its
// snapshot ids.
func (b *Baker) waitImage(ctx context.Context, region, id string) ([]string, error) {
	c := b.clients.EC2(region)
	var snaps []string
	err := b.poll(ctx, fmt.Sprintf("waiting for AMI %s in %s to be available", id, region), func() (bool, error) {
		out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		if isNotFound(err) {
			return false, nil // not visible yet
		}
		if err != nil {
			return false, awsx.ExplainError(err)
		}
		if len(out.Images) == 0 {
			return false, nil
		}
		img := out.Images[0]
		switch img.State {
		case ec2types.ImageStateAvailable:
			for _, bdm := range img.BlockDeviceMappings {
				if bdm.Ebs != nil && aws.ToString(bdm.Ebs.SnapshotId) != "" {
					snaps = append(snaps, aws.ToString(bdm.Ebs.SnapshotId))
				}
			}
			return true, nil
		case ec2types.ImageStatePending, "":
			return false, nil
		}
		reason := ""
		if img.StateReason != nil {
			reason = ": " + aws.ToString(img.StateReason.Message)
		}
		return false, fmt.Errorf("AMI %s is %s%s", id, img.State, reason)
	})
	return snaps, err
}

// createTags tags resources ids in region.
func (b *Baker) createTags(ctx context.Context, region string, ids []string, tags map[string]string) error {
	if len(ids) == 0 || len(tags) == 0 {
		return nil
	}
	ts := make([]ec2types.Tag, 0, len(tags))
	for _, k := range sortedKeys(tags) {
		ts = append(ts, tag(k, tags[k]))
	}
	if _, err := b.clients.EC2(region).CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids, Tags: ts}); err != nil {
		return fmt.Errorf("tagging %v in %s: %w", ids, region, awsx.ExplainError(err))
	}
	return nil
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
		ids = appendNew(ids, img.ID)
	}
	for _, id := range ids {
		if err := st.b.deregister(ctx, region, id); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range snaps {
		if err := st.b.deleteSnapshot(ctx, region, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
