package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// OrphanTemplate is a launch template a launch created that no Auto
// Scaling group launches from: a launch killed between creating the
// template and creating its group, or after deleting a group and before
// deleting its template.
type OrphanTemplate struct {
	// Region, ID and Name locate it.
	Region string `json:"region"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	// Recipe, Stage and LaunchID are read from its tags.
	Recipe   string `json:"recipe,omitempty"`
	Stage    string `json:"stage,omitempty"`
	LaunchID string `json:"launch_id,omitempty"`
	// Created is when EC2 created it.
	Created time.Time `json:"created,omitzero"`
}

// OrphanTemplates returns the launch templates of region that a bakery
// launch created (tagged TagLaunchID) and that no Auto Scaling group
// launches from (no group of the template's name, none naming its id or
// name, bakery's or not), created at or before cutoff: a launch creates
// the template just before its group, so a template younger than any
// launch runs may be one in progress. It makes one paginated
// DescribeLaunchTemplates (filtered by tag key) and, when that finds any,
// one paginated DescribeAutoScalingGroups of every group in the region.
func (inv *Inventory) OrphanTemplates(ctx context.Context, region string, cutoff time.Time) ([]OrphanTemplate, error) {
	what := "listing the launch templates no group launches from in " + region
	var candidates []OrphanTemplate
	p := ec2.NewDescribeLaunchTemplatesPaginator(inv.c.EC2(region), &ec2.DescribeLaunchTemplatesInput{
		Filters:    []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{TagLaunchID}}},
		MaxResults: aws.Int32(200),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, awsx.ExplainError(err))
		}
		for _, lt := range page.LaunchTemplates {
			tags := map[string]string{}
			for _, t := range lt.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			if tags[TagLaunchID] == "" { // the filter narrows; it does not prove
				continue
			}
			o := OrphanTemplate{Region: region, ID: aws.ToString(lt.LaunchTemplateId), Name: aws.ToString(lt.LaunchTemplateName),
				Recipe: tags[catalog.TagRecipe], Stage: tags[TagStage], LaunchID: tags[TagLaunchID]}
			if lt.CreateTime != nil {
				o.Created = lt.CreateTime.UTC()
			}
			if o.Created.IsZero() || o.Created.After(cutoff) {
				continue
			}
			candidates = append(candidates, o)
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	used := map[string]bool{} // template ids and names, group names
	gp := autoscaling.NewDescribeAutoScalingGroupsPaginator(inv.c.AutoScaling(region), &autoscaling.DescribeAutoScalingGroupsInput{})
	for gp.HasMorePages() {
		page, err := gp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, awsx.ExplainError(err))
		}
		for _, g := range page.AutoScalingGroups {
			used["name:"+aws.ToString(g.AutoScalingGroupName)] = true
			if lt := g.LaunchTemplate; lt != nil {
				markUsed(used, lt.LaunchTemplateId, lt.LaunchTemplateName)
			}
			if m := g.MixedInstancesPolicy; m != nil && m.LaunchTemplate != nil && m.LaunchTemplate.LaunchTemplateSpecification != nil {
				lt := m.LaunchTemplate.LaunchTemplateSpecification
				markUsed(used, lt.LaunchTemplateId, lt.LaunchTemplateName)
			}
		}
	}
	out := slices.DeleteFunc(candidates, func(o OrphanTemplate) bool { return used["id:"+o.ID] || used["name:"+o.Name] })
	slices.SortFunc(out, func(a, b OrphanTemplate) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// markUsed notes a launch template a group names, by id or name (a group
// may name it either way).
func markUsed(used map[string]bool, id, name *string) {
	if id != nil {
		used["id:"+*id] = true
	}
	if name != nil {
		used["name:"+*name] = true
	}
}
