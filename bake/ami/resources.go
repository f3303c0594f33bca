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
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/steps"
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
	// KindLaunchTemplate is no bake's: a launch template a killed launch
	// left with no group (see Baker.Sweep), swept with the rest.
	KindLaunchTemplate Kind = "launch-template"
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
	// LastSeen is the bake's last sign of life on it: the later of Created
	// and its bakery:heartbeat tag. Sweep judges age by it.
	LastSeen time.Time `json:"last_seen,omitzero"`
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
				tags := catalogami.TagMap(in.Tags)
				launched := aws.ToTime(in.LaunchTime).UTC()
				out = append(out, Resource{
					Kind: KindInstance, ID: aws.ToString(in.InstanceId), Region: region, Name: tags["Name"],
					BakeID: tags[catalog.TagBakeID], Created: launched, LastSeen: lastSign(launched, tags),
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
		tags := catalogami.TagMap(kp.Tags)
		created := createdTag(tags)
		if created.IsZero() && kp.CreateTime != nil {
			created = kp.CreateTime.UTC()
		}
		rs = append(rs, Resource{Kind: KindKeyPair, ID: aws.ToString(kp.KeyName), Region: region, BakeID: tags[catalog.TagBakeID],
			Created: created, LastSeen: lastSign(created, tags)})
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
			tags := catalogami.TagMap(g.Tags)
			out = append(out, Resource{Kind: KindSecurityGroup, ID: aws.ToString(g.GroupId), Region: region, Name: aws.ToString(g.GroupName),
				BakeID: tags[catalog.TagBakeID], Created: createdTag(tags), LastSeen: lastSign(createdTag(tags), tags)})
		}
	}
	return out, nil
}

// imageResource is img as a resource of its bake.
func imageResource(img catalogami.Image) Resource {
	return Resource{Kind: KindImage, ID: img.ImageID, Region: img.Region, Name: img.Name, BakeID: img.BakeID,
		Created: img.Created, LastSeen: lastSign(img.Created, img.Tags)}
}

// lastSign is the later of created and the bakery:heartbeat tag.
func lastSign(created time.Time, tags map[string]string) time.Time {
	if hb, err := time.Parse(time.RFC3339, tags[catalog.TagHeartbeat]); err == nil && hb.After(created) {
		return hb.UTC()
	}
	return created
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
			tags := catalogami.TagMap(s.Tags)
			created := createdTag(tags)
			if created.IsZero() && s.StartTime != nil {
				created = s.StartTime.UTC()
			}
			out = append(out, ownSnapshot{
				Resource: Resource{Kind: KindSnapshot, ID: aws.ToString(s.SnapshotId), Region: region, BakeID: tags[catalog.TagBakeID],
					Created: created, LastSeen: lastSign(created, tags)},
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
// uses it). launched is when the newest of them was launched: for a
// while after it EC2 may not know an instance yet, so *.NotFound is
// retried within awsx.FreshTimeout of it instead of taken as "gone".
// In a failed bake's cleanup it is a step line ("cleaning up: terminating
// i-...").
func (b *Baker) terminate(ctx context.Context, region string, ids []string, launched time.Time, timeout time.Duration) (err error) {
	if len(ids) == 0 {
		return nil
	}
	step := steps.CleanupProgress(ctx).Step("terminating " + strings.Join(ids, ", "))
	defer func() { step.Done(err) }()
	c := b.clients.EC2(region)
	fresh := func(err error) bool {
		return awsx.IsNotFound(err) && b.clock.Now().Sub(launched) < awsx.FreshTimeout
	}
	var errs []error
	for _, id := range ids {
		err := awsx.Fresh("EC2 to know instance "+id, b.pollInterval, b.clock).Retry(ctx, fresh, func(ctx context.Context) error {
			_, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
			return err
		})
		if err != nil && !awsx.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("terminating %s in %s: %w", strings.Join(ids, ", "), region, awsx.ExplainError(err))
	}
	return b.waitInstances(ctx, region, ids, ec2types.InstanceStateNameTerminated, launched, timeout)
}

// waitInstances waits, at most timeout (the recipe's instance timeout
// when 0), until every instance of ids is in state want. An instance
// EC2 does not know counts as not there yet within awsx.FreshTimeout of
// launched, and as terminated after.
func (b *Baker) waitInstances(ctx context.Context, region string, ids []string, want ec2types.InstanceStateName, launched time.Time, timeout time.Duration) error {
	c := b.clients.EC2(region)
	w := b.wait(fmt.Sprintf("%s in %s to be %s", strings.Join(ids, ", "), region, want), timeout, DefaultInstanceTimeout)
	return w.Until(ctx, func(ctx context.Context) (bool, error) {
		out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
		if awsx.IsNotFound(err) {
			// Just created (EC2 is eventually consistent) or long gone.
			return want == ec2types.InstanceStateNameTerminated && b.clock.Now().Sub(launched) >= awsx.FreshTimeout, nil
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

// deleteSecurityGroup deletes group id in region, retrying for at most
// catalogami.InUseTimeout while EC2 still counts a terminated instance as
// using it, or does not know the group yet (created a moment ago). In a
// failed bake's cleanup it is a step line.
func (b *Baker) deleteSecurityGroup(ctx context.Context, region, id string) (err error) {
	step := steps.CleanupProgress(ctx).Step("deleting security group " + id)
	defer func() { step.Done(err) }()
	c := b.clients.EC2(region)
	w := b.wait(fmt.Sprintf("security group %s in %s to be free to delete", id, region), catalogami.InUseTimeout, catalogami.InUseTimeout)
	err = w.Retry(ctx, awsx.IsInUse, func(ctx context.Context) error {
		_, err := c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
		if awsx.IsNotFound(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting security group %s in %s: %w", id, region, awsx.ExplainError(err))
	}
	return nil
}

// deleteKeyPair deletes key pair name in region. In a failed bake's
// cleanup it is a step line.
func (b *Baker) deleteKeyPair(ctx context.Context, region, name string) (err error) {
	step := steps.CleanupProgress(ctx).Step("deleting key pair " + name)
	defer func() { step.Done(err) }()
	_, err = b.clients.EC2(region).DeleteKeyPair(ctx, &ec2.DeleteKeyPairInput{KeyName: aws.String(name)})
	if err != nil && !awsx.IsNotFound(err) {
		return fmt.Errorf("deleting key pair %s in %s: %w", name, region, awsx.ExplainError(err))
	}
	return nil
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
