package main

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
)

// The scale recipe: one machine_image baked in scaleHome and copied to the
// other scaleRegions, promoted through dev, staging and prod.
const (
	scaleRecipe   = "scale"
	scaleArtifact = "scale"
	scaleHome     = "us-east-1"
	scaleActor    = "bench"
	// scaleProdAccount is the account prod's AMIs are shared with.
	scaleProdAccount = "111122223333"
)

// scaleRegions are the regions every version is in.
var scaleRegions = []string{"us-east-1", "eu-west-1", "us-west-2"}

// motoServer is a moto_server the scale bench started.
type motoServer struct {
	URL string
	cmd *exec.Cmd
}

// motoScalePy is moto_server with the scale bench's two patches: tag
// lookup by resource id from moto's dict (stock moto scans every tag in
// the region for each resource it describes) and DescribeImages pages
// (stock moto ignores MaxResults). See the file's docstring.
//
//go:embed motoscale.py
var motoScalePy []byte

// startMoto starts bin on a free loopback port and waits until it
// answers. With patchDir set it runs motoscale.py (written there) with
// the python beside bin instead of bin itself.
func startMoto(ctx context.Context, bin, patchDir string) (*motoServer, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	args := []string{bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port)}
	if patchDir != "" {
		script := filepath.Join(patchDir, "motoscale.py")
		if err := os.WriteFile(script, motoScalePy, 0o644); err != nil {
			return nil, fmt.Errorf("writing the patched moto_server: %w", err)
		}
		args = append([]string{filepath.Join(filepath.Dir(bin), "python"), script}, args[1:]...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "MOTO_ACCOUNT_ID=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w (install it with scripts/moto-venv.sh or set MOTO_SERVER)", args[0], err)
	}
	m := &motoServer{URL: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(m.URL + "/moto-api/data.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m.stop()
			return nil, fmt.Errorf("moto_server (%s) is not answering on port %d", bin, port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssKiB returns the server's resident set size now (Linux), 0 when unknown.
func (m *motoServer) rssKiB() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func (m *motoServer) stop() {
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// awsConfig returns a config for moto (or the proxy in front of it) at url.
func awsConfig(url, region string) aws.Config {
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		// Seeding calls are many and moto is one Python process: retry
		// what it answers slowly rather than failing the run.
		RetryMaxAttempts: 10,
	}
}

// seedFigures are what seeding took.
type seedFigures struct {
	AMIs          int           `json:"amis"`
	Snapshots     int           `json:"snapshots"`
	Templates     int           `json:"launch_templates"`
	TemplateVers  int           `json:"launch_template_versions"`
	Groups        int           `json:"auto_scaling_groups"`
	Calls         int64         `json:"calls"`
	Wall          time.Duration `json:"wall_ns"`
	MotoRSSKiB    int64         `json:"moto_rss_kib"`
	Workers       int           `json:"workers"`
	AMIMethod     string        `json:"ami_method"`
	VersionsBaked int           `json:"versions"`
}

// versionName is the version of the i-th bake (0-based).
func versionName(i int) string { return fmt.Sprintf("1.%d.%d", i/1000, i%1000) }

// stageOf names the stages version i of n is in now and was in before:
// every version went through dev; every 10th through staging; every
// 100th through prod. The newest of each is in the stage now.
type stageHistory struct {
	stage   string
	every   int
	current bool
}

func stagesOf(i, n int) []stageHistory {
	var out []stageHistory
	for _, s := range []struct {
		name  string
		every int
	}{{"dev", 1}, {"staging", 10}, {"prod", 100}} {
		if i%s.every != 0 {
			continue
		}
		last := (n - 1) / s.every * s.every
		out = append(out, stageHistory{stage: s.name, every: s.every, current: i == last})
	}
	return out
}

// amiTags returns the tags bakery writes on the AMI (and, without the
// events, on its snapshots) of version i of n baked at t0 + i minutes:
// the bake's tags (bake/ami catalogTags plus the bake key), a stage mark
// for each stage the version is in now, and a promote event for every
// stage it went through, a demote event for each it left (catalog/ami
// LifecycleStore's format).
func amiTags(i, n int, t0 time.Time, source string) (ami, snap map[string]string) {
	created := t0.Add(time.Duration(i) * time.Minute)
	version := versionName(i)
	key := sha256.Sum256([]byte("scale " + version))
	snap = map[string]string{
		"team":               "scale",
		catalog.TagBakeID:    fmt.Sprintf("bk-%012x", i),
		catalog.TagCreated:   created.UTC().Format(time.RFC3339),
		catalog.TagRecipe:    scaleRecipe,
		catalog.TagArtifact:  scaleArtifact,
		catalog.TagVersion:   version,
		catalog.TagSourceAMI: source,
		catalog.TagCreatedBy: scaleActor,
		catalog.TagBakeKey:   hex.EncodeToString(key[:]),
	}
	ami = map[string]string{}
	for j, s := range stagesOf(i, n) {
		in := created.Add(time.Duration(j+1) * 10 * time.Second)
		if s.current {
			snap[catalogami.StageTag(s.stage)] = in.UTC().Format(time.RFC3339Nano) + " " + scaleActor
		}
		ami[catalogami.TagEventPrefix+strconv.FormatInt(in.UnixNano(), 10)] = "v1;promote;" + s.stage + ";" + scaleActor + ";;;"
		if !s.current {
			// Demoted when the next version entered the stage.
			out := t0.Add(time.Duration(i+s.every)*time.Minute + time.Duration(j+1)*10*time.Second)
			ami[catalogami.TagEventPrefix+strconv.FormatInt(out.UnixNano(), 10)] = "v1;demote;" + s.stage + ";" + scaleActor + ";;;superseded by " + versionName(i+s.every)
		}
	}
	for k, v := range snap {
		ami[k] = v
	}
	return ami, snap
}

func ec2Tags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for k, v := range m {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return out
}

// seedAMIs creates n versions × scaleRegions AMIs in moto and tags them
// and their snapshots as a bake and its promotions would have. It
// returns the base (source) AMI the recipe names.
func seedAMIs(ctx context.Context, url string, n, workers int, fig *seedFigures, calls *atomic.Int64) (string, error) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	home := ec2.NewFromConfig(awsConfig(url, scaleHome))
	calls.Add(1)
	base, err := home.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("scale-base"), RootDeviceName: aws.String("/dev/xvda")})
	if err != nil {
		return "", fmt.Errorf("registering the base AMI: %w", err)
	}
	source := aws.ToString(base.ImageId)
	for _, region := range scaleRegions {
		c := ec2.NewFromConfig(awsConfig(url, region))
		ids := make([]string, n)
		began := time.Now()
		// CreateImage from one instance, with the AMI's tags in the same
		// call (TagSpecifications): one call an AMI, where RegisterImage
		// (which drops TagSpecifications in moto) needs a CreateTags too.
		// moto gives each AMI a snapshot of its own, as EC2 does; it
		// cannot tag snapshots at creation (NotImplementedError).
		instance, err := seedInstance(ctx, c, region, source, calls)
		if err != nil {
			return "", err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(workers)
		for i := range n {
			g.Go(func() error {
				amiT, _ := amiTags(i, n, t0, source)
				calls.Add(1)
				out, err := c.CreateImage(gctx, &ec2.CreateImageInput{
					InstanceId:        aws.String(instance),
					Name:              aws.String(fmt.Sprintf("scale-%s-%s", versionName(i), region)),
					Description:       aws.String(fmt.Sprintf("bakery %s %s (%s), bake bk-%012x", scaleRecipe, versionName(i), scaleArtifact, i)),
					TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeImage, Tags: ec2Tags(amiT)}},
				})
				if err != nil {
					return fmt.Errorf("creating AMI %d in %s: %w", i, region, err)
				}
				ids[i] = aws.ToString(out.ImageId)
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return "", err
		}
		calls.Add(1)
		if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instance}}); err != nil {
			return "", fmt.Errorf("terminating the seeding instance %s in %s: %w", instance, region, err)
		}
		registered := time.Since(began)
		// The snapshots, from one listing.
		snaps := map[string]string{}
		p := ec2.NewDescribeImagesPaginator(c, &ec2.DescribeImagesInput{Owners: []string{"self"}, MaxResults: aws.Int32(1000)})
		for p.HasMorePages() {
			calls.Add(1)
			out, err := p.NextPage(ctx)
			if err != nil {
				return "", fmt.Errorf("listing the seeded AMIs in %s: %w", region, err)
			}
			for _, img := range out.Images {
				for _, b := range img.BlockDeviceMappings {
					if b.Ebs != nil && b.Ebs.SnapshotId != nil {
						snaps[aws.ToString(img.ImageId)] = aws.ToString(b.Ebs.SnapshotId)
					}
				}
			}
		}
		g, gctx = errgroup.WithContext(ctx)
		g.SetLimit(workers)
		for i, id := range ids {
			g.Go(func() error {
				_, snapT := amiTags(i, n, t0, source)
				if i%100 == 0 {
					// Promoted to prod, whose account may launch it.
					calls.Add(1)
					if _, err := c.ModifyImageAttribute(gctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(id),
						LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{UserId: aws.String(scaleProdAccount)}}}}); err != nil {
						return fmt.Errorf("sharing %s in %s: %w", id, region, err)
					}
				}
				if s := snaps[id]; s != "" {
					calls.Add(1)
					if _, err := c.CreateTags(gctx, &ec2.CreateTagsInput{Resources: []string{s}, Tags: ec2Tags(snapT)}); err != nil {
						return fmt.Errorf("tagging %s in %s: %w", s, region, err)
					}
					fig.addSnapshot()
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return "", err
		}
		fig.AMIs += n
		logf("seeded %d AMIs in %s: registered in %s, tagged in %s", n, region, registered.Round(time.Millisecond), (time.Since(began) - registered).Round(time.Millisecond))
	}
	return source, nil
}

var snapMu sync.Mutex

func (f *seedFigures) addSnapshot() {
	snapMu.Lock()
	f.Snapshots++
	snapMu.Unlock()
}

// seedInstance runs the instance the seeded AMIs of region are created
// from: from source in scaleHome, from an AMI registered for it
// elsewhere (neither is a version of the recipe).
func seedInstance(ctx context.Context, c *ec2.Client, region, source string, calls *atomic.Int64) (string, error) {
	if region != scaleHome {
		calls.Add(1)
		base, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("scale-base"), RootDeviceName: aws.String("/dev/xvda")})
		if err != nil {
			return "", fmt.Errorf("registering the base AMI in %s: %w", region, err)
		}
		source = aws.ToString(base.ImageId)
	}
	calls.Add(1)
	out, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(source), InstanceType: ec2types.InstanceTypeT3Micro,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		return "", fmt.Errorf("running the seeding instance in %s: %w", region, err)
	}
	return aws.ToString(out.Instances[0].InstanceId), nil
}

// seedFleets creates, spread over scaleRegions, launch templates whose
// versions run the newest AMIs (versions in all) and Auto Scaling groups
// on them, tagged as catalog/fleet tags bakery's launches.
func seedFleets(ctx context.Context, url string, versions, groups, workers int, fig *seedFigures, calls *atomic.Int64) error {
	const perTemplate = 10
	templates := (versions + perTemplate - 1) / perTemplate
	// The AMI in dev in each region, which the templates run.
	dev := map[string][2]string{}
	for _, region := range scaleRegions {
		calls.Add(1)
		imgs, err := ec2.NewFromConfig(awsConfig(url, region)).DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + catalogami.StageTag("dev")), Values: []string{"*"}},
		}})
		if err != nil || len(imgs.Images) == 0 {
			return fmt.Errorf("finding the AMI in dev in %s: %v", region, err)
		}
		dev[region] = [2]string{aws.ToString(imgs.Images[0].ImageId), catalogami.TagMap(imgs.Images[0].Tags)[catalog.TagVersion]}
	}
	// Go blocks while workers calls are under way: most of the work is
	// done before the loop ends, so the clock starts before it.
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	var mu sync.Mutex
	for t := range templates {
		region := scaleRegions[t%len(scaleRegions)]
		g.Go(func() error {
			ec := ec2.NewFromConfig(awsConfig(url, region))
			as := autoscaling.NewFromConfig(awsConfig(url, region))
			ami, devVersion := dev[region][0], dev[region][1]
			name := fmt.Sprintf("bakery-scale-%03d", t)
			calls.Add(1)
			lt, err := ec.CreateLaunchTemplate(gctx, &ec2.CreateLaunchTemplateInput{
				LaunchTemplateName: aws.String(name),
				LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro},
				TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: ec2Tags(map[string]string{
					catalog.TagRecipe: scaleRecipe, fleet.TagStage: "dev",
				})}},
			})
			if err != nil {
				return fmt.Errorf("creating launch template %s in %s: %w", name, region, err)
			}
			id := aws.ToString(lt.LaunchTemplate.LaunchTemplateId)
			n := 1
			for v := 1; v < perTemplate && t*perTemplate+v < versions; v++ {
				calls.Add(1)
				if _, err := ec.CreateLaunchTemplateVersion(gctx, &ec2.CreateLaunchTemplateVersionInput{
					LaunchTemplateId:   aws.String(id),
					LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro},
				}); err != nil {
					return fmt.Errorf("adding a version to %s in %s: %w", name, region, err)
				}
				n++
			}
			mu.Lock()
			fig.Templates++
			fig.TemplateVers += n
			mu.Unlock()
			// Groups: spread over the templates.
			for k := t; k < groups; k += templates {
				gname := fmt.Sprintf("bakery-scale-dev-%03d", k)
				tags := map[string]string{
					catalog.TagRecipe: scaleRecipe, fleet.TagArtifact: scaleArtifact, catalog.TagVersion: devVersion,
					fleet.TagStage: "dev", fleet.TagImage: ami, fleet.TagLaunchID: fmt.Sprintf("ln-%06d", k),
				}
				if k != groups-1 {
					// One group serves the stage; the others were disabled by later launches.
					tags[fleet.TagDisabled] = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
				}
				var asTags []astypes.Tag
				for tk, tv := range tags {
					asTags = append(asTags, astypes.Tag{Key: aws.String(tk), Value: aws.String(tv), PropagateAtLaunch: aws.Bool(true)})
				}
				calls.Add(1)
				if _, err := as.CreateAutoScalingGroup(gctx, &autoscaling.CreateAutoScalingGroupInput{
					AutoScalingGroupName: aws.String(gname),
					LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(id), Version: aws.String(strconv.Itoa(1 + k%n))},
					MinSize:              aws.Int32(0), MaxSize: aws.Int32(0), DesiredCapacity: aws.Int32(0),
					AvailabilityZones: []string{region + "a"},
					Tags:              asTags,
				}); err != nil {
					return fmt.Errorf("creating group %s in %s: %w", gname, region, err)
				}
				mu.Lock()
				fig.Groups++
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	logf("seeded the fleets in %s", time.Since(began).Round(time.Millisecond))
	return err
}

var errNoMoto = errors.New("moto_server not found: run scripts/moto-venv.sh or set MOTO_SERVER")

// freeLoopbackPort returns a TCP port free on 127.0.0.1 a moment ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
