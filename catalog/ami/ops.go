package ami

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// API is every EC2 call the AMI operations of this package make: listing,
// tagging, copying, sharing and deleting AMIs and their snapshots.
// *ec2.Client implements it; the IAM policy of an identity that bakes,
// promotes or retires needs these actions.
type API interface {
	EC2
	DescribeSnapshots(context.Context, *ec2.DescribeSnapshotsInput, ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error)
	CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	DeleteTags(context.Context, *ec2.DeleteTagsInput, ...func(*ec2.Options)) (*ec2.DeleteTagsOutput, error)
	CopyImage(context.Context, *ec2.CopyImageInput, ...func(*ec2.Options)) (*ec2.CopyImageOutput, error)
	DeregisterImage(context.Context, *ec2.DeregisterImageInput, ...func(*ec2.Options)) (*ec2.DeregisterImageOutput, error)
	DeleteSnapshot(context.Context, *ec2.DeleteSnapshotInput, ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error)
	DescribeImageAttribute(context.Context, *ec2.DescribeImageAttributeInput, ...func(*ec2.Options)) (*ec2.DescribeImageAttributeOutput, error)
	ModifyImageAttribute(context.Context, *ec2.ModifyImageAttributeInput, ...func(*ec2.Options)) (*ec2.ModifyImageAttributeOutput, error)
	DescribeSnapshotAttribute(context.Context, *ec2.DescribeSnapshotAttributeInput, ...func(*ec2.Options)) (*ec2.DescribeSnapshotAttributeOutput, error)
	ModifySnapshotAttribute(context.Context, *ec2.ModifySnapshotAttributeInput, ...func(*ec2.Options)) (*ec2.ModifySnapshotAttributeOutput, error)
	EnableImageDeprecation(context.Context, *ec2.EnableImageDeprecationInput, ...func(*ec2.Options)) (*ec2.EnableImageDeprecationOutput, error)
}

// Default bounds of the AMI waits, as Packer's amazon builders have them.
const (
	// DefaultImageTimeout bounds the wait for a new AMI to be available.
	DefaultImageTimeout = 60 * time.Minute
	// DefaultCopyTimeout bounds the wait for an AMI copy to be available.
	DefaultCopyTimeout = 120 * time.Minute
	// DefaultPoll is how often an AMI wait asks EC2.
	DefaultPoll = 15 * time.Second
	// InUseTimeout bounds how long a delete is retried while EC2 still
	// counts a resource as in use (a snapshot of an AMI just
	// deregistered).
	InUseTimeout = 5 * time.Minute
)

// Ops are the AMI operations bake, promotion, launch and retire share: a
// resumable copy, a check-first share, bounded waits, tagging that
// retries while EC2 does not know a new resource yet, and deletion that
// retries while a snapshot is still in use. One value serves every
// region; it is safe for concurrent use.
type Ops struct {
	client func(region string) API
	poll   time.Duration
	clock  awsx.Clock
}

// NewOps returns the operations over the clients client(region) returns,
// polling every poll (DefaultPoll when 0 or less) on clock (the system
// clock when nil).
func NewOps(client func(region string) API, poll time.Duration, clock awsx.Clock) *Ops {
	if poll <= 0 {
		poll = DefaultPoll
	}
	if clock == nil {
		clock = awsx.SystemClock()
	}
	return &Ops{client: client, poll: poll, clock: clock}
}

// Client returns the EC2 client of region.
func (o *Ops) Client(region string) API { return o.client(region) }

// wait returns a bounded wait for what.
func (o *Ops) wait(what string, timeout time.Duration) awsx.Wait {
	return awsx.Wait{What: what, Timeout: timeout, Interval: o.poll, Clock: o.clock}
}

// fresh returns the wait for calls on a resource created a moment ago.
func (o *Ops) fresh(what string) awsx.Wait { return awsx.Fresh(what, o.poll, o.clock) }

// Describe returns AMI id in region, or ok false when EC2 does not know
// it (any more, or not yet).
func (o *Ops) Describe(ctx context.Context, region, id string) (img Image, ok bool, err error) {
	out, err := o.client(region).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
	switch {
	case awsx.IsNotFound(err):
		return Image{}, false, nil
	case err != nil:
		return Image{}, false, fmt.Errorf("reading AMI %s in %s: %w", id, region, awsx.ExplainError(err))
	case len(out.Images) == 0:
		return Image{}, false, nil
	}
	return FromEC2(region, out.Images[0]), true, nil
}

// WaitAvailable polls AMI id in region until it is available, at most
// timeout (DefaultImageTimeout when 0 or less), and returns it. An AMI EC2
// does not know yet counts as pending (EC2 is eventually consistent); a
// failed or deregistered one is an error that says what to do.
func (o *Ops) WaitAvailable(ctx context.Context, region, id string, timeout time.Duration) (Image, error) {
	if timeout <= 0 {
		timeout = DefaultImageTimeout
	}
	var img Image
	err := o.wait(fmt.Sprintf("AMI %s in %s to be available", id, region), timeout).Until(ctx, func(ctx context.Context) (bool, error) {
		got, ok, err := o.Describe(ctx, region, id)
		if err != nil || !ok {
			return false, err
		}
		img = got
		switch ec2types.ImageState(got.State) {
		case ec2types.ImageStateAvailable:
			return true, nil
		case ec2types.ImageStatePending, "":
			return false, nil
		}
		return false, fmt.Errorf("AMI %s is %s%s: deregister it and its snapshots and try again", id, got.State, got.stateReason())
	})
	return img, err
}

// Tag writes tags on resources ids in region, retrying for a bounded time
// while EC2 does not know one of them yet (a resource created a moment
// ago).
func (o *Ops) Tag(ctx context.Context, region string, ids []string, tags map[string]string) error {
	if len(ids) == 0 || len(tags) == 0 {
		return nil
	}
	in := &ec2.CreateTagsInput{Resources: ids, Tags: EC2Tags(tags)}
	err := o.fresh("EC2 to know "+strings.Join(ids, ", ")).Retry(ctx, awsx.IsNotFound, func(ctx context.Context) error {
		_, err := o.client(region).CreateTags(ctx, in)
		return err
	})
	if err != nil {
		return fmt.Errorf("tagging %s in %s: %w", strings.Join(ids, ", "), region, awsx.ExplainError(err))
	}
	return nil
}

// CopyRequest is an AMI copy Copy makes or finishes.
type CopyRequest struct {
	// Source is the AMI copied (its Region, ImageID and Name are used).
	Source Image
	// Region is where the copy goes.
	Region string
	// Description is the copy's description. It is also how an earlier
	// run's copy is found again (with the name) when its tags were lost,
	// so it must name the run or the source.
	Description string
	// Encrypted makes the copy encrypted, with KMSKeyID (a key of Region)
	// when set, else the account's default EBS key of Region.
	Encrypted bool
	// KMSKeyID is the customer-managed key the copy is encrypted with.
	KMSKeyID string
	// Tags are written on the copy and its snapshots from the moment
	// CopyImage returns (EC2 applies TagSpecifications at once; moto
	// 5.2.5 ignores them, and Copy tags the copy right after as well).
	Tags map[string]string
	// Timeout bounds the wait for the copy (DefaultCopyTimeout when 0).
	Timeout time.Duration
	// Started, when set, is called with the copy's id the moment it is
	// known, so a caller can record it for cleanup.
	Started func(id string)
}

// Copy copies req.Source to req.Region and waits until the copy is
// available, or finishes a copy an earlier run started: an AMI in the
// region with the source's name and req.Description that is pending or
// available is taken instead of copying again. A copy quota reached
// (ResourceLimitExceeded: too many copies in flight) is retried with
// backoff within the timeout. It returns the available copy.
func (o *Ops) Copy(ctx context.Context, req CopyRequest) (Image, error) {
	src, region := req.Source, req.Region
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultCopyTimeout
	}
	id, err := o.findCopy(ctx, region, src.Name, req.Description)
	if err != nil {
		return Image{}, err
	}
	if id == "" {
		in := &ec2.CopyImageInput{
			SourceImageId: aws.String(src.ImageID),
			SourceRegion:  aws.String(src.Region),
			Name:          aws.String(src.Name),
			Description:   aws.String(req.Description),
		}
		if len(req.Tags) > 0 {
			in.TagSpecifications = TagSpecs(req.Tags, ec2types.ResourceTypeImage, ec2types.ResourceTypeSnapshot)
		}
		if req.Encrypted || req.KMSKeyID != "" {
			in.Encrypted = aws.Bool(true)
			if req.KMSKeyID != "" {
				in.KmsKeyId = aws.String(req.KMSKeyID)
			}
		}
		quota := o.wait(fmt.Sprintf("a free AMI copy slot in %s (copy quota reached)", region), timeout)
		quota.Interval = max(o.poll, 30*time.Second)
		err := quota.Retry(ctx, awsx.IsQuota, func(ctx context.Context) error {
			out, err := o.client(region).CopyImage(ctx, in)
			if err == nil {
				id = aws.ToString(out.ImageId)
			}
			return err
		})
		if err != nil {
			return Image{}, fmt.Errorf("copying AMI %s from %s to %s: %w", src.ImageID, src.Region, region, awsx.ExplainError(err))
		}
	}
	if req.Started != nil {
		req.Started(id)
	}
	if err := o.Tag(ctx, region, []string{id}, req.Tags); err != nil {
		return Image{}, err
	}
	img, err := o.WaitAvailable(ctx, region, id, timeout)
	if err != nil {
		return Image{}, err
	}
	if err := o.Tag(ctx, region, img.Snapshots, req.Tags); err != nil {
		return Image{}, err
	}
	return img, nil
}

// findCopy returns the id of an AMI in region named name with description
// desc that is pending or available: a copy an earlier run started. ""
// when there is none.
func (o *Ops) findCopy(ctx context.Context, region, name, desc string) (string, error) {
	if name == "" || desc == "" {
		return "", nil
	}
	out, err := o.client(region).DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{name}}},
	})
	if err != nil {
		return "", fmt.Errorf("looking for an earlier copy named %q in %s: %w", name, region, awsx.ExplainError(err))
	}
	for _, img := range out.Images {
		if aws.ToString(img.Description) == desc && (img.State == ec2types.ImageStatePending || img.State == ec2types.ImageStateAvailable) {
			return aws.ToString(img.ImageId), nil
		}
	}
	return "", nil
}

// Deprecate sets the deprecation time of AMI id in region to at (the
// recipe's retain.deprecate_after after the bake): consoles and
// DescribeImages then flag it as deprecated, and it stops showing in
// launch wizards. EC2 keeps minutes only; at must be in the future.
func (o *Ops) Deprecate(ctx context.Context, region, id string, at time.Time) error {
	at = at.UTC().Truncate(time.Minute)
	err := o.fresh("EC2 to know AMI "+id).Retry(ctx, awsx.IsNotFound, func(ctx context.Context) error {
		_, err := o.client(region).EnableImageDeprecation(ctx, &ec2.EnableImageDeprecationInput{ImageId: aws.String(id), DeprecateAt: aws.Time(at)})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting the deprecation time of AMI %s in %s to %s: %w", id, region, at.Format(time.RFC3339), awsx.ExplainError(err))
	}
	return nil
}

// LaunchPermissions returns the accounts that may launch AMI id in region
// and whether it is public.
func (o *Ops) LaunchPermissions(ctx context.Context, region, id string) (accounts []string, public bool, err error) {
	attr, err := o.client(region).DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{
		ImageId:   aws.String(id),
		Attribute: ec2types.ImageAttributeNameLaunchPermission,
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading who may launch AMI %s in %s: %w", id, region, awsx.ExplainError(err))
	}
	for _, p := range attr.LaunchPermissions {
		if a := aws.ToString(p.UserId); a != "" {
			accounts = append(accounts, a)
		}
		if p.Group == ec2types.PermissionGroupAll {
			public = true
		}
	}
	slices.Sort(accounts)
	return accounts, public, nil
}

// Share gives accounts launch permission on img and create-volume
// permission on its snapshots, in img's region. It reads first and adds
// only what is missing, so it is safe to run again.
func (o *Ops) Share(ctx context.Context, img Image, accounts []string) error {
	return o.setAccess(ctx, img, accounts, true)
}

// Unshare takes launch permission on img and create-volume permission on
// its snapshots away from accounts, where they have it.
func (o *Ops) Unshare(ctx context.Context, img Image, accounts []string) error {
	return o.setAccess(ctx, img, accounts, false)
}

func (o *Ops) setAccess(ctx context.Context, img Image, accounts []string, grant bool) error {
	accounts = dedupe(accounts)
	if len(accounts) == 0 {
		return nil
	}
	verb, op := "sharing", ec2types.OperationTypeAdd
	if !grant {
		verb, op = "unsharing", ec2types.OperationTypeRemove
	}
	c, region := o.client(img.Region), img.Region
	have, _, err := o.LaunchPermissions(ctx, region, img.ImageID)
	if err != nil {
		return err
	}
	if change := accessChange(have, accounts, grant); len(change) > 0 {
		perms := make([]ec2types.LaunchPermission, len(change))
		for i, a := range change {
			perms[i] = ec2types.LaunchPermission{UserId: aws.String(a)}
		}
		mods := &ec2types.LaunchPermissionModifications{Add: perms}
		if !grant {
			mods = &ec2types.LaunchPermissionModifications{Remove: perms}
		}
		if _, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(img.ImageID), LaunchPermission: mods}); err != nil {
			return fmt.Errorf("%s AMI %s in %s with %v: %w", verb, img.ImageID, region, change, awsx.ExplainError(err))
		}
	}
	for _, sn := range img.Snapshots {
		attr, err := c.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{
			SnapshotId: aws.String(sn),
			Attribute:  ec2types.SnapshotAttributeNameCreateVolumePermission,
		})
		if err != nil {
			return fmt.Errorf("reading who may use snapshot %s of AMI %s in %s: %w", sn, img.ImageID, region, awsx.ExplainError(err))
		}
		var have []string
		for _, p := range attr.CreateVolumePermissions {
			have = append(have, aws.ToString(p.UserId))
		}
		change := accessChange(have, accounts, grant)
		if len(change) == 0 {
			continue
		}
		if _, err := c.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
			SnapshotId:    aws.String(sn),
			Attribute:     ec2types.SnapshotAttributeNameCreateVolumePermission,
			OperationType: op,
			UserIds:       change,
		}); err != nil {
			return fmt.Errorf("%s snapshot %s of AMI %s in %s with %v: %w", verb, sn, img.ImageID, region, change, awsx.ExplainError(err))
		}
	}
	return nil
}

// accessChange returns the accounts to add (grant) or remove so that have
// holds, or lacks, every one of want.
func accessChange(have, want []string, grant bool) []string {
	var out []string
	for _, a := range want {
		if slices.Contains(have, a) != grant {
			out = append(out, a)
		}
	}
	return out
}

// Deregister deregisters AMI id in region, then deletes each of snapshots
// explicitly (never relying on DeregisterImage's
// DeleteAssociatedSnapshots), retrying while EC2 still counts a snapshot
// as in use by the AMI just deregistered. What is gone already counts as
// done, so it is safe to run again.
func (o *Ops) Deregister(ctx context.Context, region, id string, snapshots []string) error {
	_, err := o.client(region).DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)})
	if err != nil && !awsx.IsNotFound(err) {
		return fmt.Errorf("deregistering AMI %s in %s: %w", id, region, awsx.ExplainError(err))
	}
	for _, sn := range snapshots {
		if err := o.DeleteSnapshot(ctx, region, sn); err != nil {
			return err
		}
	}
	return nil
}

// DeleteSnapshot deletes snapshot id in region, retrying for at most
// InUseTimeout while EC2 still counts it as in use. A snapshot that is
// gone already counts as deleted.
func (o *Ops) DeleteSnapshot(ctx context.Context, region, id string) error {
	w := o.wait(fmt.Sprintf("snapshot %s in %s to be free to delete", id, region), InUseTimeout)
	err := w.Retry(ctx, awsx.IsInUse, func(ctx context.Context) error {
		_, err := o.client(region).DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		if awsx.IsNotFound(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting snapshot %s in %s: %w", id, region, awsx.ExplainError(err))
	}
	return nil
}

// EC2Tags turns a map into EC2 tags, sorted by key.
func EC2Tags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// TagSpecs tags resources of each of types with tags at creation.
func TagSpecs(tags map[string]string, types ...ec2types.ResourceType) []ec2types.TagSpecification {
	specs := make([]ec2types.TagSpecification, len(types))
	for i, t := range types {
		specs[i] = ec2types.TagSpecification{ResourceType: t, Tags: EC2Tags(tags)}
	}
	return specs
}

// TagMap turns EC2 tags into a map.
func TagMap(ts []ec2types.Tag) map[string]string {
	m := make(map[string]string, len(ts))
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// isLifecycleTag reports whether key holds an AMI's lifecycle (stage
// marks, revocation, history) rather than what its bake made.
func isLifecycleTag(key string) bool {
	return strings.HasPrefix(key, TagStagePrefix) || isEventTag(key) ||
		key == TagRevoked || key == TagRevokedAccess || key == TagPruned
}

// Supersede hands the lifecycle of AMI old to next, a new AMI of the same
// version in the same region that replaces it (bake --force): old's stage
// marks, revocation and history go to next (stage marks and revocation to
// its snapshots too) and the accounts that may launch old may launch
// next; only then is old deregistered and its snapshots deleted, so
// nothing is lost if it stops half way. Running it again finishes it.
func (o *Ops) Supersede(ctx context.Context, old, next Image) error {
	if old.Region != next.Region || old.ImageID == next.ImageID {
		return fmt.Errorf("superseding AMI %s in %s with %s in %s: not two AMIs of one region", old.ImageID, old.Region, next.ImageID, next.Region)
	}
	what := fmt.Sprintf("replacing AMI %s with %s in %s", old.ImageID, next.ImageID, old.Region)
	cur, ok, err := o.Describe(ctx, old.Region, old.ImageID)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if ok {
		img, snap := map[string]string{}, map[string]string{}
		for k, v := range cur.Tags {
			if isLifecycleTag(k) {
				img[k] = v
				if strings.HasPrefix(k, TagStagePrefix) || k == TagRevoked {
					snap[k] = v
				}
			}
		}
		if err := o.Tag(ctx, next.Region, next.Snapshots, snap); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := o.Tag(ctx, next.Region, []string{next.ImageID}, img); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		accounts, _, err := o.LaunchPermissions(ctx, old.Region, old.ImageID)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if _, revoked := cur.Tags[TagRevoked]; !revoked {
			if err := o.Share(ctx, next, accounts); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		old.Snapshots = dedupe(append(old.Snapshots, cur.Snapshots...))
	}
	if err := o.Deregister(ctx, old.Region, old.ImageID, old.Snapshots); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
