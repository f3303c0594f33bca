package retire_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/retire"
)

// layoutOf bakes the container image "app" of web's versions into a new
// layout, each baked age before now.
func layoutOf(t *testing.T, dir string, ages map[string]time.Duration) (*oci.Layout, *oci.LayoutStore) {
	t.Helper()
	ctx := context.Background()
	l, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range slices.Sorted(func(yield func(string) bool) {
		for v := range ages {
			if !yield(v) {
				return
			}
		}
	}) {
		img, err := random.Image(64, 2)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1)
		img = mutate.Annotations(img, map[string]string{
			catalog.AnnotationRecipe: "web", catalog.AnnotationArtifact: "app", catalog.AnnotationVersion: v,
			catalog.AnnotationCreated: now.Add(-ages[v]).Format(time.RFC3339),
		}).(v1.Image)
		tx := l.Begin()
		if _, err := tx.WriteImage(ctx, img); err != nil {
			t.Fatal(err)
		}
		d, err := partial.Descriptor(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Tag("app:"+v, *d); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return l, l.Store("app", "web", "app")
}

func layoutVersions(t *testing.T, s *oci.LayoutStore) []string {
	t.Helper()
	es, err := s.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Version)
	}
	slices.Sort(out)
	return out
}

// TestRetireAVersionWithAnAMIAndAContainerImageWhole: web 1.0.0 has an
// AMI (moto) and a container image (a local layout); one plan decides it
// once. Launched from its AMI between plan and apply, it keeps its
// container image too; once the instance is gone, a new run removes both.
func TestRetireAVersionWithAnAMIAndAContainerImageWhole(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	w.bake(t, "1.1.0", 20*day)
	// Each version's container image was baked after its AMI: a
	// version's bake time is its newest image's.
	l, s := layoutOf(t, t.TempDir(), map[string]time.Duration{"1.0.0": 10 * day, "1.1.0": 5 * day})
	amis := w.retirer()
	cts := retire.NewLayoutContainers("web", "app", l, s)
	observe := func() *retire.Plan {
		t.Helper()
		oa, err := amis.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		oc, err := cts.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return retire.MakePlan(retire.Merge("web", oa, oc), retire.Policy{KeepLast: 1}, now)
	}
	plan := observe()
	if len(plan.Decisions) != 2 {
		t.Fatalf("%d decisions for 2 versions: %+v", len(plan.Decisions), plan.Decisions)
	}
	d := plan.Decisions[1]
	if d.Ref.Version != "1.0.0" || d.Keep || len(d.Locations) != 2 || len(d.Artifacts) != 2 {
		t.Fatalf("1.0.0: keep %v, locations %v, artifacts %+v: want removed with both images", d.Keep, d.Locations, d.Artifacts)
	}
	out, err := w.ec2(east).RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(w.amis["1.0.0"][east]),
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := retire.ApplyAll(ctx, plan, amis, cts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Retired) != 0 || rep.AMIs != 0 || rep.Manifests != 0 || len(rep.Skipped) != 1 {
		t.Fatalf("report %+v: want 1.0.0 skipped whole", rep)
	}
	if got := layoutVersions(t, s); !slices.Equal(got, []string{"1.0.0", "1.1.0"}) || !w.exists(t, east, w.amis["1.0.0"][east]) {
		t.Fatalf("layout holds %v: 1.0.0 was half retired", got)
	}

	if _, err := w.ec2(east).TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(out.Instances[0].InstanceId)}}); err != nil {
		t.Fatal(err)
	}
	rep, err = retire.ApplyAll(ctx, observe(), amis, cts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Retired, []catalog.Ref{{Recipe: "web", Version: "1.0.0"}}) || rep.AMIs != 1 || rep.Manifests != 1 {
		t.Fatalf("report %+v: want 1.0.0 retired with its AMI and its manifest", rep)
	}
	if got := layoutVersions(t, s); !slices.Equal(got, []string{"1.1.0"}) || w.exists(t, east, w.amis["1.0.0"][east]) {
		t.Fatalf("layout holds %v, AMI there %v: want 1.0.0 gone whole", got, w.exists(t, east, w.amis["1.0.0"][east]))
	}
}
