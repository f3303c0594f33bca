package ami

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// pendingEC2 answers DescribeImages with one pending AMI and fails the
// test on any write. moto makes every AMI available at once, so the
// refusal of a pending one is tested against this small fake.
type pendingEC2 struct {
	API
	t *testing.T
}

func (f pendingEC2) DescribeImages(_ context.Context, in *ec2.DescribeImagesInput, _ ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	return &ec2.DescribeImagesOutput{Images: []ec2types.Image{{ImageId: aws.String("ami-0123456789abcdef0"), State: ec2types.ImageStatePending}}}, nil
}

func (f pendingEC2) CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error) {
	f.t.Error("CreateTags called on a pending AMI")
	return &ec2.CreateTagsOutput{}, nil
}

func TestAdoptRefusesAPendingAMI(t *testing.T) {
	client := func(string) API { return pendingEC2{t: t} }
	s := &LifecycleStore{recipe: "web", artifact: "server", regions: []string{"us-east-1"}, client: client,
		find: &Store{client: func(string) EC2 { return pendingEC2{t: t} }, concurrency: 1}, o: newOptions(nil)}
	_, err := s.Adopt(context.Background(), Adoption{Version: "1.0.0", AMIs: []RegionAMI{{Region: "us-east-1", ImageID: "ami-0123456789abcdef0"}}})
	if err == nil || !strings.Contains(err.Error(), "AMI ami-0123456789abcdef0 in us-east-1 is pending, not available: adopt it once it is available") {
		t.Errorf("Adopt = %v, want the pending AMI refused", err)
	}
}
