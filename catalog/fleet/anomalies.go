package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// Observed is what Anomalies compares the groups with.
type Observed struct {
	// ImageState maps each AMI id a group runs to its state
	// ("available", "deregistered", ...); an id that is missing is gone.
	ImageState map[string]string
	// Revoked holds the versions of the recipe that are revoked.
	Revoked map[string]bool
	// InstanceImage maps each instance id to the AMI it runs.
	InstanceImage map[string]string
}

// Anomalies returns what looks wrong in groups, the groups of one recipe
// and stage: more than one serving group; a group whose AMI is gone or
// not available, or whose version is revoked; instances whose AMI is not
// their group's. It is a pure function.
func Anomalies(recipe, stage string, groups []Group, o Observed) []string {
	var out []string
	var serving []string
	for _, g := range groups {
		if g.State == StateServing {
			serving = append(serving, g.Name)
		}
	}
	if len(serving) > 1 {
		out = append(out, fmt.Sprintf("stage %s of %s has %d serving groups (%s): a launch was interrupted or two ran at once; roll back or launch again to leave one", stage, recipe, len(serving), strings.Join(serving, ", ")))
	}
	for _, g := range groups {
		switch state, ok := o.ImageState[g.Image]; {
		case g.Image == "":
		case !ok:
			out = append(out, fmt.Sprintf("%s runs AMI %s, which is gone: it cannot launch instances; launch another version", g.Name, g.Image))
		case state != "available":
			out = append(out, fmt.Sprintf("%s runs AMI %s, which is %s: it cannot launch instances; launch another version", g.Name, g.Image, state))
		}
		if o.Revoked[g.Version] {
			out = append(out, fmt.Sprintf("%s runs %s@%s, which is revoked: launch another version", g.Name, recipe, g.Version))
		}
		var odd []string
		for _, i := range g.Instances {
			if img, ok := o.InstanceImage[i.ID]; ok && g.Image != "" && img != g.Image {
				odd = append(odd, i.ID+" ("+img+")")
			}
		}
		if len(odd) > 0 {
			out = append(out, fmt.Sprintf("%s runs AMI %s, but its instances %s run another: they were changed by hand or by another tool", g.Name, g.Image, strings.Join(odd, ", ")))
		}
	}
	return out
}

// Observe reads what Anomalies needs of groups in region: the state of
// their AMIs and the AMI of each of their instances (revocations come
// from the catalog, not from here).
func (inv *Inventory) Observe(ctx context.Context, region string, groups []Group) (Observed, error) {
	o := Observed{ImageState: map[string]string{}, InstanceImage: map[string]string{}}
	var images, instances []string
	for _, g := range groups {
		if g.Image != "" && !slices.Contains(images, g.Image) {
			images = append(images, g.Image)
		}
		instances = append(instances, g.InstanceIDs()...)
	}
	c := inv.c.EC2(region)
	for _, id := range images {
		// One id per call: a call naming an AMI that is gone fails as a
		// whole on AWS.
		out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		if awsx.IsNotFound(err) {
			continue
		}
		if err != nil {
			return o, fmt.Errorf("reading AMI %s in %s: %w", id, region, awsx.ExplainError(err))
		}
		for _, img := range out.Images {
			o.ImageState[aws.ToString(img.ImageId)] = string(img.State)
		}
	}
	if len(instances) == 0 {
		return o, nil
	}
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{InstanceIds: instances})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return o, fmt.Errorf("reading the instances of bakery's groups in %s: %w", region, awsx.ExplainError(err))
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				o.InstanceImage[aws.ToString(i.InstanceId)] = aws.ToString(i.ImageId)
			}
		}
	}
	return o, nil
}
