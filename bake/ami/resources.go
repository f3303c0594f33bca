package ami

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// Kind is the kind of a cloud resource a bake creates.
type Kind string

// The kinds of resources a bake creates, in the order they are removed.
const (
	KindInstance      Kind = "instance"
	KindSecurityGroup Kind = "security-group"
	KindKeyPair       Kind = "key-pair"
	KindImage         Kind = "image"
	KindSnapshot      Kind = "snapshot"
)

// Resource is one cloud resource a bake created.
type Resource struct {
	// Kind is what it is.
	Kind Kind `json:"kind"`
	// ID is its id (the key pair's name for a key pair).
	ID string `json:"id"`
	// Region is where it lives.
	Region string `json:"region"`
	// Name is its name, when it has one besides the id.
	Name string `json:"name,omitempty"`
	// BakeID is the bake run that created it.
	BakeID string `json:"bake_id,omitempty"`
	// Created is when it was created: an instance's launch time, else the
	// bakery:created tag. Zero when unknown.
	Created time.Time `json:"created,omitzero"`
	// Image is, for a snapshot, the AMI it belongs to.
	Image string `json:"image,omitempty"`
}

// String returns "KIND ID (REGION)".
func (r Resource) String() string {
	s := string(r.Kind) + " " + r.ID
	if r.Name != "" && r.Name != r.ID {
		s += " " + r.Name
	}
	return s + " (" + r.Region + ")"
}

// inUseTimeout bounds how long a delete is retried while EC2 says the
// resource is still in use (a security group of a just-terminated
// instance, a snapshot of a just-deregistered AMI).
const inUseTimeout = 5 * time.Minute

// liveInstanceStates are the states of an instance that still costs money
// and holds its security group and key pair.
var liveInstanceStates = []string{"pending", "running", "stopping", "stopped", "shutting-down"}

// listInstances returns the instances in region matching filters that are
// not terminated.
func (b *Baker) listInstances(ctx context.Context, region string, filters ...ec2types.Filter) ([]Resource, error) {
	filters = append(filters, filter("instance-state-name", liveInstanceStates...))
	pages := ec2.NewDescribeInstancesPaginator(b.clients.EC2(region), &ec2.DescribeInstancesInput{Filters: filters})
	var out []Resource
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing instances in %s: %w", region, awsx.ExplainError(err))
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				tags := tagMap(in.Tags)
				out = append(out, Resource{
					Kind: KindInstance, ID: aws.ToString(in.InstanceId), Region: region, Name: tags["Name"],
					BakeID: tags[catalog.TagBakeID], Created: aws.ToTime(in.LaunchTime).UTC(),
				})
			}
		}
	}
	return out, nil
}

// listKeyPairs returns the key pairs in region matching filters.
func (b *Baker) listKeyPairs(ctx context.Context, region string, filters ...ec2types.Filter) ([]Resource, error) {
	out, err := b.clients.EC2(region).DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("listing key pairs in %s: %w", region, awsx.ExplainError(err))
	}
	var rs []Resource
	for _, kp := range out.KeyPairs {
		tags := tagMap(kp.Tags)
		created := createdTag(tags)
		if created.IsZero() && kp.CreateTime != nil {
			created = kp.CreateTime.UTC()
		}
		rs = append(rs, Resource{Kind: KindKeyPair, ID: aws.ToString(kp.KeyName), Region: region, BakeID: tags[catalog.TagBakeID], Created: created})
	}
	return rs, nil
}

// listSecurityGroups returns the security groups in region matching filters.
func (b *Baker) listSecurityGroups(ctx context.Context, region string, filters ...ec2types.Filter) ([]Resource, error) {
	pages := ec2.NewDescribeSecurityGroupsPaginator(b.clients.EC2(region), &ec2.DescribeSecurityGroupsInput{Filters: filters})
	var out []Resource
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing security groups in %s: %w", region, awsx.ExplainError(err))
		}
		for _, g := range page.SecurityGroups {
			tags := tagMap(g.Tags)
			out = append(out, Resource{Kind: KindSecurityGroup, ID: aws.ToString(g.GroupId), Region: region, Name: aws.ToString(g.GroupName),
				BakeID: tags[catalog.TagBakeID], Created: createdTag(tags)})
		}
	}
	return out, nil
}

// ownImage is an AMI of this account with what cleanup and sweep need.
type ownImage struct {
	Resource
	snapshots []string
	complete  bool // has a bake key
	desc      string
}

// listImages returns this account's AMIs in region matching filters.
func (b *Baker) listImages(ctx context.Context, region string, filters ...ec2types.Filter) ([]ownImage, error) {
	pages := ec2.NewDescribeImagesPaginator(b.clients.EC2(region), &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: filters})
	var out []ownImage
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing AMIs in %s: %w", region, awsx.ExplainError(err))
		}
		for _, img := range page.Images {
			tags := tagMap(img.Tags)
			created := createdTag(tags)
			if created.IsZero() {
				created, _ = time.Parse(time.RFC3339, aws.ToString(img.CreationDate))
			}
			oi := ownImage{
				Resource: Resource{Kind: KindImage, ID: aws.ToString(img.ImageId), Region: region, Name: aws.ToString(img.Name),
					BakeID: tags[catalog.TagBakeID], Created: created},
				complete: tags[catalog.TagBakeKey] != "",
				desc:     aws.ToString(img.Description),
			}
			for _, bdm := range img.BlockDeviceMappings {
				if bdm.Ebs != nil && aws.ToString(bdm.Ebs.SnapshotId) != "" {
					oi.snapshots = append(oi.snapshots, aws.ToString(bdm.Ebs.SnapshotId))
				}
			}
			out = append(out, oi)
		}
	}
	return out, nil
}

// ownSnapshot is a snapshot of this account.
type ownSnapshot struct {
	Resource
	complete bool // has a bake key
	desc     string
}

// listSnapshots returns this account's snapshots in region matching filters.
func (b *Baker) listSnapshots(ctx context.Context, region string, filters ...ec2types.Filter) ([]ownSnapshot, error) {
	pages := ec2.NewDescribeSnapshotsPaginator(b.clients.EC2(region), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: filters})
	var out []ownSnapshot
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing snapshots in %s: %w", region, awsx.ExplainError(err))
		}
		for _, s := range page.Snapshots {
			tags := tagMap(s.Tags)
			created := createdTag(tags)
			if created.IsZero() && s.StartTime != nil {
				created = s.StartTime.UTC()
			}
			out = append(out, ownSnapshot{
				Resource: Resource{Kind: KindSnapshot, ID: aws.ToString(s.SnapshotId), Region: region, BakeID: tags[catalog.TagBakeID], Created: created},
				complete: tags[catalog.TagBakeKey] != "",
				desc:     aws.ToString(s.Description),
			})
		}
	}
	return out, nil
}

// createdTag parses the bakery:created tag; zero when absent or malformed.
func createdTag(tags map[string]string) time.Time {
	t, err := time.Parse(time.RFC3339, tags[catalog.TagCreated])
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// terminate terminates the instances ids in region and waits until they
// are terminated (a security group cannot be deleted while an instance
// uses it).
func (b *Baker) terminate(ctx context.Context, region string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	c := b.clients.EC2(region)
	_, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids})
	if err != nil && isNotFound(err) && len(ids) > 1 {
		// One of them is gone already: terminate the others one by one.
		var errs []error
		for _, id := range ids {
			if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
		err = errors.Join(errs...)
	} else if isNotFound(err) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("terminating %s in %s: %w", strings.Join(ids, ", "), region, awsx.ExplainError(err))
	}
	return b.waitInstances(ctx, region, ids, ec2types.InstanceStateNameTerminated)
}

// waitInstances waits until every instance of ids is in state want. An
// instance that disappeared counts as terminated.
func (b *Baker) waitInstances(ctx context.Context, region string, ids []string, want ec2types.InstanceStateName) error {
	c := b.clients.EC2(region)
	return b.poll(ctx, fmt.Sprintf("waiting for %s in %s to be %s", strings.Join(ids, ", "), region, want), func() (bool, error) {
		out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
		if isNotFound(err) {
			// Just created (EC2 is eventually consistent) or long gone.
			return want == ec2types.InstanceStateNameTerminated, nil
		}
		if err != nil {
			return false, awsx.ExplainError(err)
		}
		for _, res := range out.Reservations {
			for _, in := range res.Instances {
				state := in.State.Name
				if state == want {
					continue
				}
				if want != ec2types.InstanceStateNameTerminated &&
					(state == ec2types.InstanceStateNameTerminated || state == ec2types.InstanceStateNameShuttingDown) ||
					want == ec2types.InstanceStateNameRunning &&
						(state == ec2types.InstanceStateNameStopping || state == ec2types.InstanceStateNameStopped) {
					reason := ""
					if in.StateReason != nil {
						reason = ": " + aws.ToString(in.StateReason.Message)
					}
					return false, fmt.Errorf("instance %s is %s%s", aws.ToString(in.InstanceId), state, reason)
				}
				return false, nil
			}
		}
		return true, nil
	})
}

// deleteSecurityGroup deletes group id in region, retrying while EC2 still
// counts a terminated instance as using it.
func (b *Baker) deleteSecurityGroup(ctx context.Context, region, id string) error {
	ctx, cancel := context.WithTimeout(ctx, inUseTimeout)
	defer cancel()
	c := b.clients.EC2(region)
	return b.poll(ctx, fmt.Sprintf("deleting security group %s in %s", id, region), func() (bool, error) {
		_, err := c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
		switch {
		case err == nil || isNotFound(err):
			return true, nil
		case errorCode(err) == "DependencyViolation":
			return false, nil
		}
		return false, awsx.ExplainError(err)
	})
}

// deleteKeyPair deletes key pair name in region.
func (b *Baker) deleteKeyPair(ctx context.Context, region, name string) error {
	_, err := b.clients.EC2(region).DeleteKeyPair(ctx, &ec2.DeleteKeyPairInput{KeyName: aws.String(name)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting key pair %s in %s: %w", name, region, awsx.ExplainError(err))
	}
	return nil
}

// deregister deregisters AMI id in region. Its snapshots stay: delete
// them afterwards (a snapshot can only go once its AMI is gone).
func (b *Baker) deregister(ctx context.Context, region, id string) error {
	_, err := b.clients.EC2(region).DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deregistering AMI %s in %s: %w", id, region, awsx.ExplainError(err))
	}
	return nil
}

// deleteSnapshot deletes snapshot id in region, retrying while EC2 still
// counts a just-deregistered AMI as using it.
func (b *Baker) deleteSnapshot(ctx context.Context, region, id string) error {
	ctx, cancel := context.WithTimeout(ctx, inUseTimeout)
	defer cancel()
	c := b.clients.EC2(region)
	return b.poll(ctx, fmt.Sprintf("deleting snapshot %s in %s", id, region), func() (bool, error) {
		_, err := c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		switch {
		case err == nil || isNotFound(err):
			return true, nil
		case errorCode(err) == "InvalidSnapshot.InUse":
			return false, nil
		}
		return false, awsx.ExplainError(err)
	})
}

// poll calls check every poll interval until it reports done, fails, or
// ctx ends.
func (b *Baker) poll(ctx context.Context, what string, check func() (bool, error)) error {
	t := time.NewTicker(b.pollInterval)
	defer t.Stop()
	for {
		done, err := check()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// appendNew appends the items of add that are not in list yet.
func appendNew(list []string, add ...string) []string {
	for _, s := range add {
		if s != "" && !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}
