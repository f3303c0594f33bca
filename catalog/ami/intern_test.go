package ami_test

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

// TestFromEC2SharesEqualTagStrings: the AMIs of a version carry the same
// tags in every region; FromEC2 keeps one copy of each key and value, not
// one per AMI (30,000 AMIs would otherwise keep 30,000 copies).
func TestFromEC2SharesEqualTagStrings(t *testing.T) {
	// Each answer decodes into strings of its own, as the SDK's do.
	decoded := func(region string) catalogami.Image {
		return catalogami.FromEC2(region, ec2types.Image{ImageId: aws.String("ami-" + region), Tags: []ec2types.Tag{
			{Key: aws.String(strings.Clone(catalog.TagRecipe)), Value: aws.String(strings.Clone("web"))},
			{Key: aws.String(strings.Clone(catalog.TagVersion)), Value: aws.String(strings.Clone("1.4.2"))},
		}})
	}
	a, b := decoded("us-east-1"), decoded("eu-west-1")
	if a.Version != "1.4.2" || b.Recipe != "web" {
		t.Fatalf("read %s@%s and %s@%s, want web@1.4.2", a.Recipe, a.Version, b.Recipe, b.Version)
	}
	keys := func(img catalogami.Image) map[string]*byte {
		out := map[string]*byte{}
		for k := range img.Tags {
			out[k] = unsafe.StringData(k)
		}
		return out
	}
	ka, kb := keys(a), keys(b)
	for k, p := range ka {
		if kb[k] != p {
			t.Errorf("key %q is held twice", k)
		}
		if unsafe.StringData(a.Tags[k]) != unsafe.StringData(b.Tags[k]) {
			t.Errorf("value %q of %q is held twice", a.Tags[k], k)
		}
	}
}
