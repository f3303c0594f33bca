package ami_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// TestBakeLeavesNothingWhenInterrupted interrupts bakes at every step
// boundary, and loses the answer of every call that creates something (the
// call takes effect, the bake never learns the id), and checks that moto
// then holds nothing of the bake in any region involved.
func TestBakeLeavesNothingWhenInterrupted(t *testing.T) {
	srv := sshtest.Start(t)
	keyFile, pub := bakeKeyFile(t)
	srv.AuthorizeKey(pub)
	regions := []string{"us-east-1", "eu-west-1", "us-west-2"}

	for _, tc := range []struct {
		name string
		// at is the step whose end cancels the bake (its start with onStart).
		at      string
		onStart bool
		// lose is an API call whose answer is lost, in region.
		lose, region string
		// provision adds provisioners, run on sshd.
		provision bool
		copies    int
	}{
		{name: "after the key pair", at: "create temporary key pair", provision: true},
		{name: "after the security group", at: "create temporary security group", provision: true},
		{name: "after the instance", at: "launch builder"},
		{name: "after provisioning", at: "provision", provision: true},
		{name: "after stopping", at: "stop builder"},
		{name: "after CreateImage", at: "create AMI"},
		{name: "after tagging", at: "tag AMI"},
		{name: "during copies", at: "copy to eu-west-1", copies: 2},
		{name: "between copies", at: "copy to us-west-2", onStart: true, copies: 1},
		{name: "after sharing", at: "share AMI"},
		{name: "lost ImportKeyPair", lose: "ImportKeyPair", region: "us-east-1", provision: true},
		{name: "lost CreateSecurityGroup", lose: "CreateSecurityGroup", region: "us-east-1", provision: true},
		{name: "lost RunInstances", lose: "RunInstances", region: "us-east-1"},
		{name: "lost CreateImage", lose: "CreateImage", region: "us-east-1"},
		{name: "lost CopyImage", lose: "CopyImage", region: "us-west-2", copies: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newBakeEnv(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.lose != "" {
				e.cfg.APIOptions = append(e.cfg.APIOptions, loseAnswer(tc.lose, tc.region, cancel))
			}
			rep := &cancelAt{name: tc.at, onStart: tc.onStart, cancel: cancel}
			if tc.at == "" {
				rep.name = "\x00never"
			}
			b := e.baker(ami.WithProgress(rep), ami.WithCopyConcurrency(max(1, tc.copies)), fixedID("bk-"+strings.ReplaceAll(tc.name, " ", "-")))
			body := `
  regions    = ["eu-west-1", "us-west-2"]
  share_with = ["` + e.srv.NewAccount() + `"]
  kms_key_id = "alias/bakery-shared"
  region_kms_key_ids = { "eu-west-1" = "alias/bakery-shared-eu", "us-west-2" = "alias/bakery-shared-us" }`
			if tc.provision {
				body += sshRecipeBody(t, srv, keyFile, t.TempDir())
			} else {
				body += `
  region     = "us-east-1"
  source_ami = "` + bakeAL2023 + `"`
			}
			r, m := bakeRecipe(t, body)
			p, err := b.Prepare(context.Background(), r, m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.Build(ctx, p)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Build = %v, want an error wrapping context.Canceled (steps done: %v)", err, rep.steps)
			}
			if tc.at != "" && !rep.fired() {
				t.Fatalf("step %q never ended; steps done: %v", tc.at, rep.steps)
			}
			if slices.ContainsFunc(rep.steps, func(s string) bool { return strings.HasSuffix(s, "mark bake complete") }) {
				t.Errorf("the bake completed despite the interruption; steps: %v", rep.steps)
			}
			t.Logf("interrupted: %v", err)
			e.assertNoLeftovers(regions...)
		})
	}
}

// TestAbortKeepsResourcesAndSweepRemovesThem fails two bakes with
// OnErrorAbort, checks that the error names every resource kept, and that
// Sweep lists and removes them but never a completed AMI.
func TestAbortKeepsResourcesAndSweepRemovesThem(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()

	// A completed bake, which Sweep must leave alone.
	r, m := bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"
  regions    = ["eu-west-1"]`)
	done := e.baker(fixedID("bk-done"))
	p, err := done.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	completed, err := done.Build(ctx, p)
	if err != nil {
		t.Fatal(err)
	}

	// A bake whose provisioning fails: SSH answers nowhere.
	keyFile, _ := bakeKeyFile(t)
	r, m = bakeRecipe(t, `
  region               = "us-east-1"
  source_ami           = "`+bakeAL2023+`"
  ssh_host             = "127.0.0.1"
  ssh_port             = `+strconv.Itoa(closedPort(t))+`
  ssh_private_key_file = "`+keyFile+`"
  ssh_timeout          = "1s"
  ssh_source_cidrs     = ["192.0.2.0/24"]
  provision "shell" {
    inline = ["true"]
  }`)
	b := e.baker(ami.WithOnError(ami.OnErrorAbort), fixedID("bk-ssh-fails"))
	p, err = b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, p)
	var aborted *ami.AbortedError
	if !errors.As(err, &aborted) {
		t.Fatalf("Build = %v, want an *ami.AbortedError", err)
	}
	kinds := map[ami.Kind][]string{}
	for _, k := range aborted.Kept {
		kinds[k.Kind] = append(kinds[k.Kind], k.ID)
		if k.Region != "us-east-1" {
			t.Errorf("kept %v outside us-east-1", k)
		}
	}
	if len(kinds[ami.KindInstance]) != 1 || len(kinds[ami.KindSecurityGroup]) != 1 ||
		!slices.Equal(kinds[ami.KindKeyPair], []string{"bakery-bk-ssh-fails"}) || len(kinds[ami.KindImage]) != 0 {
		t.Errorf("kept = %v, want the builder, its security group and key pair", aborted.Kept)
	}
	wantErrContains(t, err, "web.bake.hcl:", "connecting to the builder", "on_error=abort kept 3 resources",
		"instance "+kinds[ami.KindInstance][0]+" ", "security-group "+kinds[ami.KindSecurityGroup][0], "key-pair bakery-bk-ssh-fails (us-east-1)",
		"bakery:bake-id=bk-ssh-fails")
	for id, state := range e.instancesOf("us-east-1", "bk-ssh-fails") {
		if state != "running" {
			t.Errorf("kept builder %s is %s, want running", id, state)
		}
	}

	// A bake interrupted after its AMI and a copy exist.
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, m = bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"
  regions    = ["eu-west-1"]`)
	b = e.baker(ami.WithOnError(ami.OnErrorAbort), fixedID("bk-cut"), ami.WithProgress(&cancelAt{name: "copy to eu-west-1", cancel: cancel}))
	if p, err = b.Prepare(ctx, r, m); err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ictx, p)
	if !errors.As(err, &aborted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Build = %v, want an *ami.AbortedError wrapping context.Canceled", err)
	}
	var cut []string
	for _, k := range aborted.Kept {
		cut = append(cut, string(k.Kind)+"@"+k.Region)
	}
	if !slices.Equal(cut, []string{"instance@us-east-1", "image@us-east-1", "snapshot@us-east-1", "image@eu-west-1", "snapshot@eu-west-1"}) {
		t.Errorf("kept = %v", aborted.Kept)
	}

	regions := []string{"us-east-1", "eu-west-1"}
	// Nothing is older than an hour yet.
	if plan, err := e.baker().Sweep(ctx, regions, time.Hour, false); err != nil || len(plan.Remove) != 0 {
		t.Fatalf("Sweep older than 1h = %+v, %v; want nothing", plan, err)
	}
	// Two hours later it all is.
	later := e.baker(ami.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))
	plan, err := later.Sweep(ctx, regions, time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, it := range plan.Remove {
		planned = append(planned, string(it.Kind)+"@"+it.Region+"/"+it.BakeID)
		if it.Reason == "" || it.Created.IsZero() {
			t.Errorf("item without reason or age: %+v", it)
		}
	}
	want := []string{
		"instance@us-east-1/bk-cut", "instance@us-east-1/bk-ssh-fails", "security-group@us-east-1/bk-ssh-fails",
		"key-pair@us-east-1/bk-ssh-fails", "image@us-east-1/bk-cut", "snapshot@us-east-1/bk-cut",
		"image@eu-west-1/bk-cut", "snapshot@eu-west-1/bk-cut",
	}
	if !slices.Equal(sortedCopy(planned), sortedCopy(want)) {
		t.Errorf("sweep plan:\n got %v\nwant %v", planned, want)
	}
	text := plan.String()
	for _, s := range []string{"would remove 8 orphaned bake or launch resources older than 1h0m0s", "bakery-bk-ssh-fails", "unfinished AMI of bake bk-cut (no bake key)", "planned"} {
		if !strings.Contains(text, s) {
			t.Errorf("plan text does not contain %q:\n%s", s, text)
		}
	}
	if _, err := json.Marshal(plan); err != nil {
		t.Errorf("plan is not JSON-able: %v", err)
	}
	t.Logf("\n%s", text)

	applied, err := later.Sweep(ctx, regions, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if !applied.Applied || len(applied.Removed) != 8 || !strings.Contains(applied.String(), "removed 8 orphaned") {
		t.Errorf("applied sweep = %s", applied)
	}
	// Only the completed bake remains, whole, and the catalog still has it.
	for _, region := range regions {
		c := e.ec2(region)
		own, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(own.Images) != 1 || e.tagsOf(region, aws.ToString(own.Images[0].ImageId))[catalog.TagBakeID] != "bk-done" {
			t.Errorf("%s: AMIs after the sweep = %v, want only the completed bake's", region, own.Images)
		}
		kps, _ := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{})
		if len(kps.KeyPairs) != 0 {
			t.Errorf("%s: key pairs left: %v", region, kps.KeyPairs)
		}
		e.assertNoOrphanSnapshots(region)
	}
	for _, bake := range []string{"bk-ssh-fails", "bk-cut"} {
		for id, state := range e.instancesOf("us-east-1", bake) {
			if state != "terminated" {
				t.Errorf("builder %s of %s is %s after the sweep", id, bake, state)
			}
		}
	}
	ex, err := done.Existing(ctx, p)
	if err != nil || ex == nil || len(ex.Images) != 2 || ex.Images[0].ImageID != completed.Images[0].ImageID {
		t.Errorf("Existing after the sweep = %+v, %v; want the completed bake %+v", ex, err, completed)
	}
	// A second sweep finds nothing.
	if again, err := later.Sweep(ctx, regions, time.Hour, true); err != nil || len(again.Remove) != 0 {
		t.Errorf("second sweep = %s, %v", again, err)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
