package awsx_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

// isolate keeps the SDK's chain away from the developer's AWS settings: no
// profile, no region, no credentials, no endpoint from the environment.
func isolate(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, name := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_STS", "AWS_EC2_METADATA_DISABLED"} {
		t.Setenv(name, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func env(vars map[string]string) awsx.Option {
	return awsx.WithGetenv(func(k string) string { return vars[k] })
}

func fakeCreds() awsx.Option {
	return awsx.WithCredentials(credentials.NewStaticCredentialsProvider(mototest.AccessKeyID, mototest.SecretAccessKey, ""))
}

func TestLoadSendsEveryServiceToTheEndpointInTheEnvironment(t *testing.T) {
	isolate(t)
	srv := mototest.Shared(t)
	ctx := context.Background()
	cfg, err := awsx.Load(ctx, awsx.WithRegion("us-east-1"), fakeCreds(),
		env(map[string]string{awsx.EndpointEnv: srv.URL}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := aws.ToString(cfg.BaseEndpoint); got != srv.URL {
		t.Errorf("BaseEndpoint = %q, want %q", got, srv.URL)
	}
	start := time.Now()
	out, err := awsx.NewEC2(cfg, "").DescribeRegions(ctx, &ec2.DescribeRegionsInput{})
	if err != nil {
		t.Fatalf("DescribeRegions: %v", err)
	}
	t.Logf("first EC2 call took %s", time.Since(start))
	var names []string
	for _, r := range out.Regions {
		names = append(names, aws.ToString(r.RegionName))
	}
	for _, want := range []string{"us-east-1", "eu-west-1"} {
		if !slices.Contains(names, want) {
			t.Errorf("DescribeRegions = %v, want %s among them", names, want)
		}
	}
	if _, err := awsx.NewAutoScaling(cfg, "").DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{}); err != nil {
		t.Errorf("DescribeAutoScalingGroups: %v", err)
	}
}

func TestLoadUsesTheStandardChain(t *testing.T) {
	isolate(t)
	srv := mototest.Shared(t)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", mototest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", mototest.SecretAccessKey)
	cfg, err := awsx.Load(context.Background(), env(map[string]string{awsx.EndpointEnv: srv.URL}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Region != "eu-west-1" {
		t.Errorf("Region = %q, want eu-west-1 from AWS_REGION", cfg.Region)
	}
	out, err := awsx.NewSTS(cfg, "").GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	if got := aws.ToString(out.Account); got != mototest.DefaultAccountID {
		t.Errorf("Account = %s, want %s", got, mototest.DefaultAccountID)
	}
}

func TestWithEndpointWinsOverTheEnvironment(t *testing.T) {
	isolate(t)
	srv := mototest.Shared(t)
	cfg, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(),
		env(map[string]string{awsx.EndpointEnv: "http://127.0.0.1:1"}), awsx.WithEndpoint(srv.URL))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := awsx.NewEC2(cfg, "").DescribeRegions(context.Background(), &ec2.DescribeRegionsInput{}); err != nil {
		t.Fatalf("DescribeRegions: %v", err)
	}
}

func TestLoadRejectsAnEndpointThatIsNotAURL(t *testing.T) {
	isolate(t)
	_, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(),
		env(map[string]string{awsx.EndpointEnv: "127.0.0.1:5000"}))
	if err == nil || !strings.Contains(err.Error(), awsx.EndpointEnv) || !strings.Contains(err.Error(), "http://") {
		t.Fatalf("Load with %s=127.0.0.1:5000: err = %v, want one naming the variable and an example URL", awsx.EndpointEnv, err)
	}
}

func TestLoadWithoutARegion(t *testing.T) {
	isolate(t)
	_, err := awsx.Load(context.Background(), fakeCreds())
	if !errors.Is(err, awsx.ErrNoRegion) {
		t.Fatalf("Load = %v, want ErrNoRegion", err)
	}
	const want = "no AWS region: set AWS_REGION or region in your profile, or name regions in the recipe"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestLoadRetries(t *testing.T) {
	isolate(t)
	cfg, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Retryer().MaxAttempts(); got != awsx.DefaultMaxAttempts {
		t.Errorf("MaxAttempts = %d, want %d", got, awsx.DefaultMaxAttempts)
	}
	if cfg.BaseEndpoint != nil {
		t.Errorf("BaseEndpoint = %q without an override, want nil", *cfg.BaseEndpoint)
	}

	cfg, err = awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(),
		awsx.WithMaxAttempts(2), awsx.WithEndpoint("http://127.0.0.1:1"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Retryer().MaxAttempts(); got != 2 {
		t.Errorf("MaxAttempts = %d, want 2", got)
	}
	_, err = awsx.NewEC2(cfg, "").DescribeRegions(context.Background(), &ec2.DescribeRegionsInput{})
	var maxErr *retry.MaxAttemptsError
	if !errors.As(err, &maxErr) || maxErr.Attempt != 2 {
		t.Errorf("DescribeRegions against a closed port: err = %v, want it to give up after 2 attempts", err)
	}
}

func TestClientsReachEachRegion(t *testing.T) {
	isolate(t)
	srv := mototest.Shared(t)
	ctx := context.Background()
	cfg := srv.ConfigForAccount(t, "us-east-1", srv.NewAccount())
	const param = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
	amis := map[string]string{}
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		p, err := awsx.NewSSM(cfg, region).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(param)})
		if err != nil {
			t.Fatalf("GetParameter %s in %s: %v", param, region, err)
		}
		ami := aws.ToString(p.Parameter.Value)
		amis[region] = ami
		out, err := awsx.NewEC2(cfg, region).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}})
		if err != nil {
			t.Fatalf("DescribeImages %s in %s: %v", ami, region, err)
		}
		if len(out.Images) != 1 || aws.ToString(out.Images[0].ImageId) != ami {
			t.Errorf("DescribeImages %s in %s = %d images, want it", ami, region, len(out.Images))
		}
	}
	if amis["us-east-1"] == amis["eu-west-1"] {
		t.Errorf("both regions resolved %s to %s; want per-region AMIs (is the region reaching moto?)", param, amis["us-east-1"])
	}

	// State made through one region's client stays in that region.
	west := awsx.NewEC2(cfg, "eu-west-1")
	if _, err := west.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: aws.String("awsx-west"), Description: aws.String("awsx test"),
	}); err != nil {
		t.Fatalf("CreateSecurityGroup in eu-west-1: %v", err)
	}
	filter := &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("group-name"), Values: []string{"awsx-west"}}}}
	for region, want := range map[string]int{"eu-west-1": 1, "us-east-1": 0} {
		out, err := awsx.NewEC2(cfg, region).DescribeSecurityGroups(ctx, filter)
		if err != nil {
			t.Fatalf("DescribeSecurityGroups in %s: %v", region, err)
		}
		if len(out.SecurityGroups) != want {
			t.Errorf("%s has %d groups named awsx-west, want %d", region, len(out.SecurityGroups), want)
		}
	}
}

func TestDescribeDefaultAMIs(t *testing.T) {
	srv := mototest.Shared(t)
	ctx := context.Background()
	client := awsx.NewEC2(srv.Config(t, "us-east-1"), "")
	out, err := client.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"al2023-ami-2023.*-x86_64"}}},
	})
	if err != nil {
		t.Fatalf("DescribeImages owner amazon: %v", err)
	}
	if len(out.Images) == 0 {
		t.Fatal("moto has no Amazon Linux 2023 x86_64 AMI owned by amazon")
	}
	id := aws.ToString(out.Images[0].ImageId)
	byID, err := client.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
	if err != nil {
		t.Fatalf("DescribeImages %s: %v", id, err)
	}
	if len(byID.Images) != 1 || aws.ToString(byID.Images[0].Name) != aws.ToString(out.Images[0].Name) {
		t.Errorf("DescribeImages %s = %+v, want the image named %s", id, byID.Images, aws.ToString(out.Images[0].Name))
	}
}

func TestCallerIdentity(t *testing.T) {
	srv := mototest.Shared(t)
	ctx := context.Background()
	other := srv.NewAccount()
	for _, tc := range []struct {
		cfg  aws.Config
		want string
	}{
		{srv.Config(t, "us-east-1"), mototest.DefaultAccountID},
		{srv.ConfigForAccount(t, "eu-west-1", other), other},
	} {
		out, err := awsx.NewSTS(tc.cfg, "").GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			t.Fatalf("GetCallerIdentity: %v", err)
		}
		if got := aws.ToString(out.Account); got != tc.want {
			t.Errorf("Account = %s, want %s", got, tc.want)
		}
	}
}

func TestExplainErrorOnARealMotoError(t *testing.T) {
	srv := mototest.Shared(t)
	_, err := awsx.NewEC2(srv.Config(t, "us-east-1"), "").DescribeImages(context.Background(),
		&ec2.DescribeImagesInput{ImageIds: []string{"ami-00000000"}})
	if err == nil {
		t.Fatal("DescribeImages ami-00000000 succeeded, want InvalidAMIID.NotFound")
	}
	explained := awsx.ExplainError(err)
	msg := explained.Error()
	if !strings.HasPrefix(msg, "image not found calling ec2:DescribeImages: check the AMI id") {
		t.Errorf("ExplainError = %q, want it to start with the friendly message", msg)
	}
	if !strings.HasSuffix(msg, err.Error()) {
		t.Errorf("ExplainError = %q, want it to end with the original %q", msg, err)
	}
	var apiErr smithy.APIError
	if !errors.As(explained, &apiErr) || apiErr.ErrorCode() != "InvalidAMIID.NotFound" {
		t.Errorf("errors.As(explained, APIError) = %v, want code InvalidAMIID.NotFound", apiErr)
	}
	if !errors.Is(explained, err) {
		t.Error("explained error does not wrap the original")
	}
	t.Logf("explained: %s", msg)
	if again := awsx.ExplainError(explained); again.Error() != msg {
		t.Errorf("explaining twice = %q, want %q", again, msg)
	}
}

func TestLoadWithoutCredentialsSaysWhatToSet(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	_, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"))
	if !errors.Is(err, awsx.ErrNoCredentials) || !strings.Contains(err.Error(), "set AWS_PROFILE") {
		t.Fatalf("err = %v, want awsx.ErrNoCredentials", err)
	}
}
