package ami

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// tag writes snap on l's snapshots, then img on l (pruning events to stay
// under MaxTags), each only where it is not there already. The AMI comes
// last, so that what the AMI says is true of its snapshots.
func (s *LifecycleStore) tag(ctx context.Context, l *located, img, snap map[string]string) error {
	if err := s.tagSnapshots(ctx, l, snap); err != nil {
		return err
	}
	return s.tagImage(ctx, l, img)
}

// tagSnapshots writes tags on those of l's snapshots that lack them (all
// of them when their tags were not read).
func (s *LifecycleStore) tagSnapshots(ctx context.Context, l *located, tags map[string]string) error {
	if len(tags) == 0 {
		return nil
	}
	var ids []string
	diff := map[string]string{}
	for _, id := range l.Snapshots {
		have, known := l.snaps[id]
		changed := false
		for k, v := range tags {
			if cur, ok := have[k]; !known || !ok || cur != v {
				diff[k] = v
				changed = true
			}
		}
		if changed {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.client(l.Region).CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids, Tags: EC2Tags(diff)}); err != nil {
		return fmt.Errorf("tagging snapshots %s of AMI %s in %s: %w", strings.Join(ids, ", "), l.ImageID, l.Region, awsx.ExplainError(err))
	}
	for _, id := range ids {
		if l.snaps == nil {
			l.snaps = map[string]map[string]string{}
		}
		if l.snaps[id] == nil {
			l.snaps[id] = map[string]string{}
		}
		maps.Copy(l.snaps[id], diff)
	}
	return nil
}

// tagImage writes add on l's AMI where it is not there already, deleting
// the oldest events first when the AMI would otherwise hold more than
// MaxTags tags (see planTags). When EC2 still finds too many tags (another
// writer added some), it re-reads the AMI's tags and tries again.
func (s *LifecycleStore) tagImage(ctx context.Context, l *located, add map[string]string) error {
	c := s.client(l.Region)
	for attempt := 0; ; attempt++ {
		p := planTags(l.Tags, add)
		if len(p.Delete) > 0 {
			tags := make([]ec2types.Tag, len(p.Delete))
			for i, k := range p.Delete {
				tags[i] = ec2types.Tag{Key: aws.String(k)}
			}
			if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{l.ImageID}, Tags: tags}); err != nil {
				return fmt.Errorf("deleting the oldest events of AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
			}
			for _, k := range p.Delete {
				delete(l.Tags, k)
			}
		}
		if len(p.Create) == 0 {
			return nil
		}
		_, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{l.ImageID}, Tags: EC2Tags(p.Create)})
		if err == nil {
			if l.Tags == nil {
				l.Tags = map[string]string{}
			}
			maps.Copy(l.Tags, p.Create)
			s.remember(l.Image)
			return nil
		}
		if awsx.ErrorCode(err) != "TagLimitExceeded" || attempt >= 2 {
			return fmt.Errorf("tagging AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
		}
		if err := s.refresh(ctx, l); err != nil {
			return err
		}
	}
}

// refresh re-reads the tags of l's AMI.
func (s *LifecycleStore) refresh(ctx context.Context, l *located) error {
	out, err := s.client(l.Region).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{l.ImageID}})
	if err != nil {
		return fmt.Errorf("reading the tags of AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
	}
	if len(out.Images) == 0 {
		return fmt.Errorf("reading the tags of AMI %s in %s: it is gone", l.ImageID, l.Region)
	}
	l.Tags = FromEC2(l.Region, out.Images[0]).Tags
	return nil
}

// untag deletes keys from l's snapshots (whatever their value), then from
// l's AMI: a key with a value only if the AMI still has that value, a key
// without one whatever its value. Keys known to be absent are skipped.
func (s *LifecycleStore) untag(ctx context.Context, l *located, keys map[string]*string) error {
	c := s.client(l.Region)
	var snapIDs []string
	snapKeys := map[string]bool{}
	for _, id := range l.Snapshots {
		have, known := l.snaps[id]
		found := false
		for k := range keys {
			if _, ok := have[k]; ok || !known {
				snapKeys[k] = true
				found = true
			}
		}
		if found {
			snapIDs = append(snapIDs, id)
		}
	}
	if len(snapIDs) > 0 {
		var tags []ec2types.Tag
		for _, k := range slices.Sorted(maps.Keys(snapKeys)) {
			tags = append(tags, ec2types.Tag{Key: aws.String(k)})
		}
		if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: snapIDs, Tags: tags}); err != nil {
			return fmt.Errorf("untagging snapshots %s of AMI %s in %s: %w", strings.Join(snapIDs, ", "), l.ImageID, l.Region, awsx.ExplainError(err))
		}
		for _, id := range snapIDs {
			for k := range snapKeys {
				delete(l.snaps[id], k)
			}
		}
	}
	var tags []ec2types.Tag
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if _, ok := l.Tags[k]; ok {
			tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: keys[k]})
		}
	}
	if len(tags) == 0 {
		return nil
	}
	if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{l.ImageID}, Tags: tags}); err != nil {
		return fmt.Errorf("untagging AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
	}
	for _, t := range tags {
		if t.Value == nil || l.Tags[*t.Key] == *t.Value {
			delete(l.Tags, *t.Key)
		}
	}
	s.remember(l.Image)
	return nil
}
