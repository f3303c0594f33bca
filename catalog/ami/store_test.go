package ami_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

// al2023 is a default AMI moto ships in us-east-1 (owner alias amazon).
const al2023 = "ami-03c3da4cfa8e8943a"

// bakeAMI makes an AMI in region the way a bake does: an instance, an
// image of it, tags on the image and its snapshots.
func bakeAMI(t *testing.T, c *ec2.Client, region string, tags map[string]string) string {
	t.Helper()
	ctx := context.Background()
	src, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}, Filters: []ec2types.Filter{
		{Name: aws.String("name"), Values: []string{"al2023-ami-2023.*-kernel-6.1-x86_64"}},
	}})
	if err != nil || len(src.Images) == 0 {
		t.Fatalf("finding a source AMI in %s: %v (%d found)", region, err, len(src.Images))
	}
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: src.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	img, err := c.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: run.Instances[0].InstanceId, Name: aws.String("img-" + tags[catalog.TagBakeID])})
	if err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	d, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{*img.ImageId}})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{*img.ImageId}
	for _, b := range d.Images[0].BlockDeviceMappings {
		ids = append(ids, *b.Ebs.SnapshotId)
	}
	var ts []ec2types.Tag
	for k, v := range tags {
		ts = append(ts, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids, Tags: ts}); err != nil {
		t.Fatalf("CreateTags: %v", err)
	}
	return *img.ImageId
}

func tags(version, key, bakeID, created string) map[string]string {
	m := map[string]string{
		catalog.TagRecipe:    "web",
		catalog.TagArtifact:  "server",
		catalog.TagVersion:   version,
		catalog.TagSourceAMI: al2023,
		catalog.TagCreated:   created,
		catalog.TagBakeID:    bakeID,
	}
	if key != "" {
		m[catalog.TagBakeKey] = key
	}
	return m
}

func TestStoreFindsAMIsByTheirTags(t *testing.T) {
	srv := mototest.Shared(t)
	account := srv.NewAccount()
	cfg := srv.ConfigForAccount(t, "us-east-1", account)
	east := ec2.NewFromConfig(cfg)
	west := ec2.NewFromConfig(srv.ConfigForAccount(t, "eu-west-1", account))

	v1east := bakeAMI(t, east, "us-east-1", tags("1.0.0", "sha256:k1", "bk-1", "2026-01-01T00:00:00Z"))
	v1west := bakeAMI(t, west, "eu-west-1", tags("1.0.0", "sha256:k1", "bk-1", "2026-01-01T00:00:00Z"))
	v2east := bakeAMI(t, east, "us-east-1", tags("2.0.0", "sha256:k2", "bk-2", "2026-02-01T00:00:00Z"))
	unfinished := bakeAMI(t, east, "us-east-1", tags("3.0.0", "", "bk-3", "2026-03-01T00:00:00Z"))
	// A rebake of 1.0.0 (bakery bake --force): the newer one wins.
	v1eastNewer := bakeAMI(t, east, "us-east-1", tags("1.0.0", "sha256:k1", "bk-4", "2026-01-02T00:00:00Z"))
	// Another account's AMI with the same tags is not ours.
	other := ec2.NewFromConfig(srv.ConfigForAccount(t, "us-east-1", srv.NewAccount()))
	bakeAMI(t, other, "us-east-1", tags("1.0.0", "sha256:k1", "bk-5", "2026-01-03T00:00:00Z"))

	store := catalogami.NewStoreFromConfig(cfg, catalogami.WithConcurrency(2))
	ctx := context.Background()
	regions := []string{"us-east-1", "eu-west-1", "us-west-2", "us-east-1"}

	got, err := store.ByVersion(ctx, "web", "server", "1.0.0", regions)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["us-east-1"].ImageID != v1eastNewer || got["eu-west-1"].ImageID != v1west {
		t.Fatalf("ByVersion 1.0.0 = %+v, want %s in us-east-1 and %s in eu-west-1", got, v1eastNewer, v1west)
	}
	img := got["eu-west-1"]
	if img.Recipe != "web" || img.Artifact != "server" || img.Version != "1.0.0" || img.BakeKey != "sha256:k1" ||
		img.BaseName != al2023 || img.BakeID != "bk-1" || img.Kind != "ami" || img.Reference != v1west ||
		img.Region != "eu-west-1" || img.State != "available" || len(img.Snapshots) != 1 || !img.Complete() ||
		!img.Created.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || img.CreationDate.IsZero() {
		t.Errorf("eu-west-1 image = %+v", img)
	}

	byKey, err := store.ByBakeKey(ctx, "sha256:k2", regions)
	if err != nil {
		t.Fatal(err)
	}
	if len(byKey) != 1 || byKey["us-east-1"].ImageID != v2east {
		t.Errorf("ByBakeKey k2 = %+v, want only %s", byKey, v2east)
	}

	// An unfinished bake is not in the catalog...
	if got, err := store.ByVersion(ctx, "web", "server", "3.0.0", regions); err != nil || len(got) != 0 {
		t.Errorf("ByVersion 3.0.0 = %+v, %v; want nothing", got, err)
	}
	// ...unless asked for.
	all, err := store.Find(ctx, regions, catalogami.Query{Recipe: "web", Unfinished: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, img := range all {
		ids = append(ids, img.Region+"/"+img.ImageID)
	}
	want := []string{"us-east-1/" + unfinished, "us-east-1/" + v2east, "us-east-1/" + v1eastNewer, "us-east-1/" + v1east, "eu-west-1/" + v1west}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("Find recipe=web unfinished:\n got %v\nwant %v", ids, want)
	}
	if all[0].Complete() {
		t.Errorf("%s has no bake key but Complete() = true", unfinished)
	}

	if _, err := store.Find(ctx, regions, catalogami.Query{Version: "1.0.0"}); err == nil {
		t.Error("Find with neither recipe, bake key nor bake id succeeded")
	}
}

// pagedEC2 serves DescribeImages in pages of one image, to show that
// every page is read. A fake is fine here: moto does not paginate
// DescribeImages.
type pagedEC2 struct {
	images []ec2types.Image
	calls  int
}

func (p *pagedEC2) DescribeImages(_ context.Context, in *ec2.DescribeImagesInput, _ ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	p.calls++
	i := 0
	if in.NextToken != nil {
		i = int((*in.NextToken)[0] - '0')
	}
	out := &ec2.DescribeImagesOutput{Images: p.images[i : i+1]}
	if i+1 < len(p.images) {
		out.NextToken = aws.String(string(rune('0' + i + 1)))
	}
	return out, nil
}

func TestStoreReadsEveryPage(t *testing.T) {
	fake := &pagedEC2{}
	for _, id := range []string{"ami-1", "ami-2", "ami-3"} {
		fake.images = append(fake.images, ec2types.Image{ImageId: aws.String(id), Tags: []ec2types.Tag{
			{Key: aws.String(catalog.TagBakeKey), Value: aws.String("sha256:k")},
		}})
	}
	store := catalogami.NewStore(func(string) catalogami.EC2 { return fake })
	got, err := store.Find(context.Background(), []string{"us-east-1"}, catalogami.Query{BakeKey: "sha256:k"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || fake.calls != 3 {
		t.Errorf("got %d images in %d calls, want 3 in 3", len(got), fake.calls)
	}
}

// sizeRecorder forwards DescribeImages to moto and records the page size
// each call asked for (moto 5.2.5 ignores MaxResults and answers in one
// page, so what bakery sends is checked here).
type sizeRecorder struct {
	catalogami.EC2
	sizes []int32
}

func (r *sizeRecorder) DescribeImages(ctx context.Context, in *ec2.DescribeImagesInput, o ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	r.sizes = append(r.sizes, aws.ToInt32(in.MaxResults))
	return r.EC2.DescribeImages(ctx, in, o...)
}

// TestStoreListsInPagesOfPageSize: at 10,000 AMIs a region, DescribeImages
// must come in bounded pages (1000 ⇒ about 10 calls), not one answer of
// any size.
func TestStoreListsInPagesOfPageSize(t *testing.T) {
	srv := mototest.Shared(t)
	cfg := srv.ConfigForAccount(t, "us-east-1", srv.NewAccount())
	c := ec2.NewFromConfig(cfg)
	id := bakeAMI(t, c, "us-east-1", tags("1.0.0", "sha256:k", "bk-1", "2026-01-01T00:00:00Z"))
	rec := &sizeRecorder{EC2: c}
	store := catalogami.NewStore(func(string) catalogami.EC2 { return rec })
	got, err := store.Find(context.Background(), []string{"us-east-1"}, catalogami.Query{Recipe: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ImageID != id {
		t.Fatalf("found %v, want %s", got, id)
	}
	if len(rec.sizes) != 1 || rec.sizes[0] != 1000 {
		t.Errorf("DescribeImages asked for pages of %v, want [1000]", rec.sizes)
	}
}
