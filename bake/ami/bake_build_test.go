package ami_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/crypto/ssh"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

func TestBakeCopiesSharesAndTagsInEveryRegion(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()
	other := e.srv.NewAccount()
	clock := time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)
	var lines strings.Builder
	// Look at the builder while it runs.
	var builder ec2types.Instance
	var userData string
	var volumes []ec2types.Volume
	look := func() {
		c := e.ec2("us-east-1")
		out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + catalog.TagBakeID), Values: []string{"bk-full"}},
		}})
		if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
			t.Errorf("describing the builder: %v, %+v", err, out)
			return
		}
		builder = out.Reservations[0].Instances[0]
		attr, err := c.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: builder.InstanceId, Attribute: ec2types.InstanceAttributeNameUserData})
		if err != nil {
			t.Error(err)
			return
		}
		userData = aws.ToString(attr.UserData.Value)
		vols, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
			{Name: aws.String("attachment.instance-id"), Values: []string{aws.ToString(builder.InstanceId)}},
		}})
		if err != nil {
			t.Error(err)
			return
		}
		volumes = vols.Volumes
	}
	b := e.baker(ami.WithClock(func() time.Time { return clock }), fixedID("bk-full"),
		ami.WithProgress(teeReporter{progress.NewLines(&lines), &onStart{name: "stop builder", f: look}}))
	r, m := bakeRecipe(t, `
  region         = "us-east-1"
  source_ami_ssm = "`+bakeAL2023SSM+`"
  regions        = ["eu-west-1", "us-west-2"]
  share_with     = ["`+other+`"]
  kms_key_id     = "alias/bakery-shared"
  region_kms_key_ids = { "eu-west-1" = "alias/bakery-shared", "us-west-2" = "alias/bakery-shared" }
  tags           = { team = "web" }
  user_data      = "#cloud-config\n"
  root_volume_size = 20`)

	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Regions, []string{"us-east-1", "eu-west-1", "us-west-2"}) {
		t.Fatalf("plan regions = %v", p.Regions)
	}
	if ex, err := b.Existing(ctx, p); err != nil || ex != nil {
		t.Fatalf("Existing before the bake = %+v, %v; want nil", ex, err)
	}
	res, err := b.Build(ctx, p)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, lines.String())
	}
	if res.BakeID != "bk-full" || len(res.Images) != 3 {
		t.Fatalf("result = %+v, want 3 images of bake bk-full", res)
	}

	for i, img := range res.Images {
		if img.Region != p.Regions[i] || !strings.HasPrefix(img.ImageID, "ami-") || len(img.Snapshots) != 1 {
			t.Errorf("image %d = %+v", i, img)
		}
		c := e.ec2(img.Region)
		d, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{img.ImageID}})
		if err != nil || len(d.Images) != 1 {
			t.Fatalf("%s: describing %s: %v", img.Region, img.ImageID, err)
		}
		if got := aws.ToString(d.Images[0].Name); got != "web-1.0.0-20260504030201" {
			t.Errorf("%s: AMI name = %q", img.Region, got)
		}
		want := map[string]string{
			catalog.TagRecipe: "web", catalog.TagArtifact: "server", catalog.TagVersion: "1.0.0",
			catalog.TagBakeKey: p.Key, catalog.TagSourceAMI: bakeAL2023, catalog.TagCreated: "2026-05-04T03:02:01Z",
			catalog.TagBakeID: "bk-full", "team": "web",
		}
		for _, id := range append([]string{img.ImageID}, img.Snapshots...) {
			got := e.tagsOf(img.Region, id)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: %s tag %s = %q, want %q", img.Region, id, k, got[k], v)
				}
			}
		}
		attr, err := c.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(img.ImageID), Attribute: ec2types.ImageAttributeNameLaunchPermission})
		if err != nil {
			t.Fatal(err)
		}
		if len(attr.LaunchPermissions) != 1 || aws.ToString(attr.LaunchPermissions[0].UserId) != other {
			t.Errorf("%s: launch permissions of %s = %+v, want %s", img.Region, img.ImageID, attr.LaunchPermissions, other)
		}
		sattr, err := c.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{SnapshotId: aws.String(img.Snapshots[0]), Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission})
		if err != nil {
			t.Fatal(err)
		}
		if len(sattr.CreateVolumePermissions) != 1 || aws.ToString(sattr.CreateVolumePermissions[0].UserId) != other {
			t.Errorf("%s: create-volume permissions of %s = %+v, want %s", img.Region, img.Snapshots[0], sattr.CreateVolumePermissions, other)
		}
	}

	// The builder ran with IMDSv2 required, the user data, and an
	// encrypted gp3 root volume of the recipe's size.
	if builder.MetadataOptions == nil || builder.MetadataOptions.HttpTokens != ec2types.HttpTokensStateRequired {
		t.Errorf("builder metadata options = %+v, want HttpTokens required", builder.MetadataOptions)
	}
	if got := e.tagsOf("us-east-1", aws.ToString(builder.InstanceId))["Name"]; got != "bakery builder web 1.0.0" {
		t.Errorf("builder Name tag = %q", got)
	}
	if aws.ToString(builder.ImageId) != bakeAL2023 || builder.InstanceType != ec2types.InstanceTypeT3Micro {
		t.Errorf("builder = %s from %s, want t3.micro from %s", builder.InstanceType, aws.ToString(builder.ImageId), bakeAL2023)
	}
	if ud, err := base64.StdEncoding.DecodeString(userData); err != nil || string(ud) != "#cloud-config\n" {
		t.Errorf("builder user data = %q (%v)", ud, err)
	}
	if len(volumes) != 1 || aws.ToInt32(volumes[0].Size) != 20 || volumes[0].VolumeType != ec2types.VolumeTypeGp3 || !aws.ToBool(volumes[0].Encrypted) {
		t.Errorf("builder volumes = %+v, want one encrypted 20 GiB gp3 volume", volumes)
	}

	// The builder is gone, and no key pair or security group was made.
	insts := e.instancesOf("us-east-1", "bk-full")
	if len(insts) != 1 {
		t.Errorf("builder instances = %v, want one", insts)
	}
	for id, state := range insts {
		if state != ec2types.InstanceStateNameTerminated {
			t.Errorf("builder %s is %s, want terminated", id, state)
		}
	}
	for _, region := range p.Regions {
		c := e.ec2(region)
		kps, _ := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{})
		sgs, _ := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{catalog.TagBakeID}}}})
		if len(kps.KeyPairs) != 0 || len(sgs.SecurityGroups) != 0 {
			t.Errorf("%s: a bake without provisioners made key pairs %v and security groups %v", region, kps.KeyPairs, sgs.SecurityGroups)
		}
		e.assertNoOrphanSnapshots(region)
	}
	for _, step := range []string{"resolve network", "launch builder", "stop builder", "create AMI", "tag AMI", "copy to eu-west-1", "copy to us-west-2", "share AMI", "mark bake complete"} {
		if !strings.Contains(lines.String(), `step="server: `+step+`" status=done`) {
			t.Errorf("progress has no finished step %q:\n%s", step, lines.String())
		}
	}

	// The catalog now holds the bake in every region, with the same key.
	ex, err := b.Existing(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ex == nil || ex.BakeKey != p.Key || len(ex.Images) != 3 || len(ex.Missing(p)) != 0 {
		t.Fatalf("Existing = %+v, want the 3 baked AMIs with key %s", ex, p.Key)
	}
	for i := range ex.Images {
		if ex.Images[i].ImageID != res.Images[i].ImageID || ex.Images[i].Region != res.Images[i].Region {
			t.Errorf("Existing image %d = %+v, baked %+v", i, ex.Images[i], res.Images[i])
		}
	}
	// A second Prepare of the same recipe computes the same key: the
	// engine reports it up to date.
	p2, err := b.Prepare(ctx, r, m)
	if err != nil || p2.Key != ex.BakeKey {
		t.Errorf("second Prepare key = %v, %v; want %s", p2, err, ex.BakeKey)
	}

	// Regions that disagree on the key of one version are an error.
	if _, err := e.ec2("us-west-2").CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{res.Images[2].ImageID},
		Tags: []ec2types.Tag{{Key: aws.String(catalog.TagBakeKey), Value: aws.String("sha256:other")}}}); err != nil {
		t.Fatal(err)
	}
	_, err = b.Existing(ctx, p)
	wantErrContains(t, err, "version 1.0.0 is stored with different bake keys", "sha256:other in us-west-2", "bump the recipe version")
}

// bakeKeyFile writes an ed25519 private key in OpenSSH form and returns its
// path and public key.
func bakeKeyFile(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, signer.PublicKey()
}

// sshRecipeBody is a machine image whose provisioners run on sshd (the
// builder's SSH address is overridden with ssh_host), uploading a file
// into dir and running a command.
func sshRecipeBody(t *testing.T, srv *sshtest.Server, keyFile, dir string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "motd")
	if err := os.WriteFile(src, []byte("baked by bakery\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return `
  region               = "us-east-1"
  source_ami           = "` + bakeAL2023 + `"
  ssh_host             = "` + srv.Host + `"
  ssh_port             = ` + strconv.Itoa(srv.Port) + `
  ssh_username         = "` + srv.User + `"
  ssh_private_key_file = "` + keyFile + `"
  ssh_timeout          = "20s"
  provision "file" {
    source      = "` + src + `"
    destination = "` + dir + `/motd"
  }
  provision "shell" {
    inline = ["echo provisioned $GREETING", "touch ` + dir + `/done"]
    env    = { GREETING = "hello" }
  }`
}

func TestBakeProvisionsOverSSHWithTemporaryKeyPairAndSecurityGroup(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()
	srv := sshtest.Start(t)
	keyFile, pub := bakeKeyFile(t)
	srv.AuthorizeKey(pub)
	dir := t.TempDir()
	r, m := bakeRecipe(t, sshRecipeBody(t, srv, keyFile, dir))

	// Look at the temporary resources while the builder runs.
	var during struct {
		keyPairs []string
		groups   []ec2types.SecurityGroup
	}
	look := func() {
		c := e.ec2("us-east-1")
		kps, err := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{})
		if err != nil {
			t.Error(err)
			return
		}
		for _, k := range kps.KeyPairs {
			during.keyPairs = append(during.keyPairs, aws.ToString(k.KeyName))
		}
		sgs, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:" + catalog.TagBakeID), Values: []string{"bk-ssh"}}}})
		if err != nil {
			t.Error(err)
			return
		}
		during.groups = sgs.SecurityGroups
	}
	var out strings.Builder
	// OnErrorAbort keeps resources only when a bake fails: a successful
	// bake still removes its temporary ones.
	b := e.baker(fixedID("bk-ssh"), ami.WithOnError(ami.OnErrorAbort), ami.WithOutput(&out), ami.WithProgress(&onStart{name: "provision", f: look}))
	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(ctx, p)
	if err != nil {
		t.Fatalf("Build: %v\noutput:\n%s", err, out.String())
	}
	// Env values are secret: the output shows them masked.
	if !strings.Contains(out.String(), "provisioned (sensitive value)") {
		t.Errorf("provisioner output not streamed:\n%s", out.String())
	}
	if got, err := os.ReadFile(filepath.Join(dir, "motd")); err != nil || string(got) != "baked by bakery\n" {
		t.Errorf("uploaded file = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "done")); err != nil {
		t.Errorf("shell provisioner did not run: %v", err)
	}
	if !slices.Equal(during.keyPairs, []string{"bakery-bk-ssh"}) {
		t.Errorf("key pairs during the bake = %v, want [bakery-bk-ssh]", during.keyPairs)
	}
	if len(during.groups) != 1 {
		t.Fatalf("security groups during the bake = %+v, want one", during.groups)
	}
	g := during.groups[0]
	if aws.ToString(g.GroupName) != "bakery-bk-ssh" || len(g.IpPermissions) != 1 {
		t.Fatalf("security group = %+v", g)
	}
	perm := g.IpPermissions[0]
	var cidrs []string
	for _, rng := range perm.IpRanges {
		cidrs = append(cidrs, aws.ToString(rng.CidrIp))
	}
	// moto_server listens on 127.0.0.1, so this runner's address on the
	// route to the EC2 endpoint is 127.0.0.1.
	if aws.ToString(perm.IpProtocol) != "tcp" || aws.ToInt32(perm.FromPort) != int32(srv.Port) || aws.ToInt32(perm.ToPort) != int32(srv.Port) ||
		!slices.Equal(cidrs, []string{"127.0.0.1/32"}) {
		t.Errorf("ingress = %s %d-%d from %v, want tcp %d from [127.0.0.1/32]",
			aws.ToString(perm.IpProtocol), aws.ToInt32(perm.FromPort), aws.ToInt32(perm.ToPort), cidrs, srv.Port)
	}
	// Afterwards only the AMI remains.
	if len(res.Images) != 1 {
		t.Fatalf("images = %+v", res.Images)
	}
	c := e.ec2("us-east-1")
	kps, _ := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{})
	sgs, _ := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{catalog.TagBakeID}}}})
	if len(kps.KeyPairs) != 0 || len(sgs.SecurityGroups) != 0 {
		t.Errorf("after the bake: key pairs %v, security groups %v; want none", kps.KeyPairs, sgs.SecurityGroups)
	}
	for id, state := range e.instancesOf("us-east-1", "bk-ssh") {
		if state != ec2types.InstanceStateNameTerminated {
			t.Errorf("builder %s is %s", id, state)
		}
	}
}

// onStart is a progress.Reporter that calls f when the step whose name
// ends in name starts.
type onStart struct {
	name string
	f    func()
}

func (o *onStart) Step(name string) progress.Step {
	if strings.HasSuffix(name, o.name) {
		o.f()
	}
	return progress.Discard().Step(name)
}
func (o *onStart) Info(string) {}

// teeReporter reports to two Reporters.
type teeReporter [2]progress.Reporter

func (r teeReporter) Step(name string) progress.Step {
	return teeStep{r[0].Step(name), r[1].Step(name)}
}
func (r teeReporter) Info(msg string) { r[0].Info(msg); r[1].Info(msg) }

type teeStep [2]progress.Step

func (s teeStep) SetTotal(n int64) { s[0].SetTotal(n); s[1].SetTotal(n) }
func (s teeStep) Add(n int64)      { s[0].Add(n); s[1].Add(n) }
func (s teeStep) Done(err error)   { s[0].Done(err); s[1].Done(err) }
