package chaos_test

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// image is an AMI the account owns.
type image struct {
	region, id string
	tags       map[string]string
	snapshots  []string
}

// group is an Auto Scaling group.
type group struct {
	region, name string
	tags         map[string]string
	serving      bool
	instances    []string
	template     string // launch template id
}

// inventory is what the account holds, read directly from moto.
type inventory struct {
	images    []image
	groups    []group
	instances map[string]string // "REGION ID" of every instance not terminated → its AMI
	instTags  map[string]map[string]string
	templates []string // "REGION ID NAME"
	keyPairs  []string
	secGroups []string
	snapshots []string // "REGION ID"
	exists    map[string]bool
}

// inventory reads the account. The light one (full false) lists only
// images and snapshots with bakery's tags (moto lists its own public
// images slowly); orphans reads it all.
func (w *world) inventory(full ...bool) inventory {
	w.t.Helper()
	all := len(full) > 0 && full[0]
	var tagged []ec2types.Filter
	if !all {
		tagged = []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{"bakery:recipe"}}}
	}
	inv := inventory{instances: map[string]string{}, instTags: map[string]map[string]string{}, exists: map[string]bool{}}
	began := time.Now()
	defer func() { w.inventoryTime += time.Since(began) }()
	for _, region := range regions {
		c := w.direct(region)
		imgs, err := c.DescribeImages(w.ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: tagged})
		if err != nil {
			w.t.Fatalf("listing images in %s: %v", region, err)
		}
		for _, im := range imgs.Images {
			x := image{region: region, id: aws.ToString(im.ImageId), tags: ec2Tags(im.Tags)}
			for _, bdm := range im.BlockDeviceMappings {
				if bdm.Ebs != nil && bdm.Ebs.SnapshotId != nil {
					x.snapshots = append(x.snapshots, aws.ToString(bdm.Ebs.SnapshotId))
				}
			}
			inv.images = append(inv.images, x)
			inv.exists["image "+region+" "+x.id] = true
		}
		for _, s := range w.snapshotIDs(region, tagged...) {
			inv.snapshots = append(inv.snapshots, region+" "+s)
			inv.exists["snapshot "+region+" "+s] = true
		}
		if !all && region != "us-east-1" {
			continue // the fleet runs in us-east-1 only
		}
		insts, err := c.DescribeInstances(w.ctx, &ec2.DescribeInstancesInput{})
		if err != nil {
			w.t.Fatalf("listing instances in %s: %v", region, err)
		}
		for _, r := range insts.Reservations {
			for _, i := range r.Instances {
				if i.State != nil && (i.State.Name == ec2types.InstanceStateNameTerminated || i.State.Name == ec2types.InstanceStateNameShuttingDown) {
					continue
				}
				inv.instances[region+" "+aws.ToString(i.InstanceId)] = aws.ToString(i.ImageId)
				inv.instTags[region+" "+aws.ToString(i.InstanceId)] = ec2Tags(i.Tags)
			}
		}
		if all {
			inv.readTemporaries(w, region, c)
		}
		as := autoscaling.NewFromConfig(w.moto.ConfigForAccount(w.t, region, w.account))
		gs, err := as.DescribeAutoScalingGroups(w.ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
		if err != nil {
			w.t.Fatalf("listing groups in %s: %v", region, err)
		}
		for _, g := range gs.AutoScalingGroups {
			x := group{region: region, name: aws.ToString(g.AutoScalingGroupName), tags: asTags(g.Tags)}
			_, disabled := x.tags["bakery:disabled"]
			_, launching := x.tags["bakery:launching"]
			_, failed := x.tags["bakery:failed"]
			x.serving = x.tags["bakery:stage"] != "" && !disabled && !launching && !failed
			for _, i := range g.Instances {
				x.instances = append(x.instances, region+" "+aws.ToString(i.InstanceId))
			}
			switch {
			case g.LaunchTemplate != nil:
				x.template = aws.ToString(g.LaunchTemplate.LaunchTemplateId)
			case g.MixedInstancesPolicy != nil && g.MixedInstancesPolicy.LaunchTemplate != nil && g.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification != nil:
				x.template = aws.ToString(g.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId)
			}
			inv.groups = append(inv.groups, x)
		}
	}
	return inv
}

// readTemporaries adds the key pairs, security groups and launch
// templates of region.
func (inv *inventory) readTemporaries(w *world, region string, c *ec2.Client) {
	kps, err := c.DescribeKeyPairs(w.ctx, &ec2.DescribeKeyPairsInput{})
	if err != nil {
		w.t.Fatalf("listing key pairs in %s: %v", region, err)
	}
	for _, k := range kps.KeyPairs {
		inv.keyPairs = append(inv.keyPairs, region+" "+aws.ToString(k.KeyName))
	}
	sgs, err := c.DescribeSecurityGroups(w.ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		w.t.Fatalf("listing security groups in %s: %v", region, err)
	}
	for _, g := range sgs.SecurityGroups {
		if aws.ToString(g.GroupName) != "default" {
			inv.secGroups = append(inv.secGroups, region+" "+aws.ToString(g.GroupId)+" "+aws.ToString(g.GroupName))
		}
	}
	lts, err := c.DescribeLaunchTemplates(w.ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil {
		w.t.Fatalf("listing launch templates in %s: %v", region, err)
	}
	for _, lt := range lts.LaunchTemplates {
		inv.templates = append(inv.templates, region+" "+aws.ToString(lt.LaunchTemplateId)+" "+aws.ToString(lt.LaunchTemplateName))
	}
}

func (w *world) snapshotIDs(region string, filters ...ec2types.Filter) []string {
	w.t.Helper()
	out, err := w.direct(region).DescribeSnapshots(w.ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: filters})
	if err != nil {
		w.t.Fatalf("listing snapshots in %s: %v", region, err)
	}
	var ids []string
	for _, s := range out.Snapshots {
		ids = append(ids, aws.ToString(s.SnapshotId))
	}
	return ids
}

func ec2Tags(tags []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func asTags(tags []astypes.TagDescription) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// protected returns what no command may delete now, with why: images
// that are staged, revoked (kept 7 days by default), run by an instance or
// named by a group (serving, or disabled: a rollback target), and their
// snapshots.
func (w *world) protected() map[string]string {
	inv := w.inventory()
	out := map[string]string{}
	groupImages := map[string]string{}
	for _, g := range inv.groups {
		if id := g.tags["bakery:image"]; id != "" {
			groupImages[g.region+" "+id] = "image of group " + g.name
		}
	}
	inUse := map[string]bool{}
	for key, ami := range inv.instances {
		region, _, _ := strings.Cut(key, " ")
		inUse[region+" "+ami] = true
	}
	for _, im := range inv.images {
		key := im.region + " " + im.id
		var why string
		for k := range im.tags {
			if stage, ok := strings.CutPrefix(k, "bakery:stage:"); ok && stage != "" {
				why = "in " + stage
			}
		}
		switch {
		case why != "":
		case im.tags["bakery:revoked"] != "":
			why = "revoked, kept"
		case inUse[key]:
			why = "run by an instance"
		case groupImages[key] != "":
			why = groupImages[key]
		default:
			continue
		}
		why = fmt.Sprintf("web@%s %s", im.tags["bakery:version"], why)
		out["image "+key] = why
		for _, s := range im.snapshots {
			out["snapshot "+im.region+" "+s] = why
		}
	}
	return out
}

// orphans lists what bakery created and no catalog entry or fleet names:
// instances outside every group, key pairs, security groups, launch
// templates no group launches from, groups without bakery's tags or
// under a duplicate name, AMIs that are not the one image of a baked
// version in their region, snapshots of no AMI.
func (w *world) orphans() []string {
	inv := w.inventory(true)
	var out []string
	inGroup := map[string]bool{}
	usedTemplates := map[string]bool{}
	names := map[string]int{}
	for _, g := range inv.groups {
		for _, i := range g.instances {
			inGroup[i] = true
		}
		usedTemplates[g.region+" "+g.template] = true
		names[g.region+" "+g.name]++
		if g.tags["bakery:recipe"] == "" {
			out = append(out, "group "+g.region+" "+g.name+" without bakery tags")
		}
	}
	for n, k := range names {
		if k > 1 {
			out = append(out, fmt.Sprintf("group %s exists %d times", n, k))
		}
	}
	for i := range inv.instances {
		if !inGroup[i] {
			out = append(out, fmt.Sprintf("instance %s in no group (tags %v)", i, inv.instTags[i]))
		}
	}
	for _, k := range inv.keyPairs {
		out = append(out, "key pair "+k)
	}
	for _, g := range inv.secGroups {
		out = append(out, "security group "+g)
	}
	for _, lt := range inv.templates {
		region, rest, _ := strings.Cut(lt, " ")
		id, _, _ := strings.Cut(rest, " ")
		if !usedTemplates[region+" "+id] {
			out = append(out, "launch template "+lt+" no group launches from")
		}
	}
	perVersion := map[string][]string{}
	snapOf := map[string]bool{}
	for _, im := range inv.images {
		v := im.tags["bakery:version"]
		if im.tags["bakery:recipe"] != "web" || !w.baked[v] {
			out = append(out, fmt.Sprintf("image %s %s of no baked version (tags %v)", im.region, im.id, im.tags))
		} else {
			perVersion[im.region+" web@"+v] = append(perVersion[im.region+" web@"+v], im.id)
		}
		for _, s := range im.snapshots {
			snapOf[im.region+" "+s] = true
		}
	}
	for k, ids := range perVersion {
		if len(ids) > 1 {
			out = append(out, fmt.Sprintf("%s has %d images %v: the catalog names one", k, len(ids), ids))
		}
	}
	for _, s := range inv.snapshots {
		if !snapOf[s] && !w.snapshots0[s] {
			out = append(out, "snapshot "+s+" of no image")
		}
	}
	sort.Strings(out)
	return out
}

// anyImageOf reports whether one of version v's images in us-east-1
// satisfies ok. A killed bake can leave a second complete AMI of a
// version; bakery then acts on the one it prefers (the one in a stage)
// and sweep reports the other, so the check must not pick one itself.
func (w *world) anyImageOf(v string, ok func(image) bool) bool {
	for _, im := range w.inventory().images {
		if im.region == "us-east-1" && im.tags["bakery:version"] == v && ok(im) {
			return true
		}
	}
	return false
}

// inStage reports whether an image of version v carries stage's mark.
func (w *world) inStage(v, stage string) bool {
	return w.anyImageOf(v, func(im image) bool { _, in := im.tags["bakery:stage:"+stage]; return in })
}

// revoked reports whether an image of version v is revoked.
func (w *world) revoked(v string) bool {
	return w.anyImageOf(v, func(im image) bool { return im.tags["bakery:revoked"] != "" })
}

// serving returns the version prod's one serving group runs ("" when
// none or several serve).
func (w *world) serving() string {
	var vs []string
	for _, g := range w.inventory().groups {
		if g.serving && g.tags["bakery:stage"] == "prod" {
			vs = append(vs, g.tags["bakery:version"])
		}
	}
	if len(vs) != 1 {
		return ""
	}
	return vs[0]
}
