package faultproxy_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/faultproxy"
)

// With ApplyCopyTags a copy carries its TagSpecifications' image tags as
// soon as CopyImage took effect, as on EC2, even when its answer is lost;
// without it moto leaves the copy untagged.
func TestApplyCopyTagsTagsTheCopyAsEC2Does(t *testing.T) {
	for _, apply := range []bool{true, false} {
		opts := []faultproxy.Option{faultproxy.LoseAnswer("CopyImage", 1)}
		if apply {
			opts = append(opts, faultproxy.ApplyCopyTags())
		}
		e := newEnv(t, opts...)
		name := "copy-with-tags"
		_, err := e.proxied(1).CopyImage(context.Background(), &ec2.CopyImageInput{SourceImageId: aws.String(al2023), SourceRegion: aws.String("us-east-1"),
			Name: aws.String(name), TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeImage,
				Tags: []ec2types.Tag{{Key: aws.String("bakery:bake-id"), Value: aws.String("bk-1")}, {Key: aws.String("bakery:recipe"), Value: aws.String("web")}}}}})
		if err == nil {
			t.Fatal("the CopyImage answer was not lost")
		}
		out, err := e.direct().DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"},
			Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{name}}}})
		if err != nil || len(out.Images) != 1 {
			t.Fatalf("apply %v: the copy: %v, %d images", apply, err, len(out.Images))
		}
		tags := map[string]string{}
		for _, tg := range out.Images[0].Tags {
			tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if apply && (tags["bakery:bake-id"] != "bk-1" || tags["bakery:recipe"] != "web") {
			t.Errorf("with ApplyCopyTags the copy's tags are %v", tags)
		}
		if !apply && len(tags) != 0 {
			t.Errorf("moto now applies CopyImage's TagSpecifications itself (%v): ApplyCopyTags is no longer needed", tags)
		}
	}
}
