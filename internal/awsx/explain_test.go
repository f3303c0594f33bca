package awsx_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// These cover the codes moto_server does not produce without an IAM setup;
// TestExplainErrorOnARealMotoError covers a real one end to end.
func TestExplainErrorCodes(t *testing.T) {
	op := func(service, operation string, err error) error {
		return &smithy.OperationError{ServiceID: service, OperationName: operation, Err: err}
	}
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "from AWS"} }
	for _, tc := range []struct {
		err  error
		want string // prefix of the explained message; "" means unchanged
	}{
		{op("EC2", "RunInstances", api("UnauthorizedOperation")), "not allowed to call ec2:RunInstances: grant that permission"},
		{op("Auto Scaling", "CreateAutoScalingGroup", api("AccessDenied")), "not allowed to call autoscaling:CreateAutoScalingGroup"},
		{op("EC2", "DescribeImages", api("AuthFailure")), "AWS rejected the credentials calling ec2:DescribeImages: check AWS_PROFILE"},
		{op("STS", "GetCallerIdentity", api("ExpiredToken")), "AWS credentials expired calling sts:GetCallerIdentity: refresh them"},
		{op("EC2", "RunInstances", api("InvalidAMIID.Malformed")), "image not found calling ec2:RunInstances"},
		{op("EC2", "RunInstances", api("InvalidParameterValue")), "AWS rejected a parameter of ec2:RunInstances"},
		{op("EC2", "CreateTags", api("RequestLimitExceeded")), "AWS kept throttling ec2:CreateTags after retries"},
		{op("EC2", "RunInstances", api("VcpuLimitExceeded")), "an AWS quota was reached calling ec2:RunInstances"},
		{op("SSM", "GetParameter", api("ThrottlingException")), "AWS kept throttling ssm:GetParameter"},
		{op("EC2", "DescribeImages", &v4.SigningError{Err: errors.New("failed to retrieve credentials")}), "no usable AWS credentials calling ec2:DescribeImages"},
		{fmt.Errorf("creating AMI in us-east-1: %w", op("EC2", "CreateImage", api("InvalidParameterValue"))), "AWS rejected a parameter of ec2:CreateImage"},
		{op("EC2", "DescribeImages", api("SomethingElse")), ""},
		{errors.New("not an AWS error"), ""},
	} {
		got := awsx.ExplainError(tc.err)
		if tc.want == "" {
			if got != tc.err {
				t.Errorf("ExplainError(%v) = %v, want it unchanged", tc.err, got)
			}
			continue
		}
		if !strings.HasPrefix(got.Error(), tc.want) {
			t.Errorf("ExplainError(%v) = %q, want prefix %q", tc.err, got, tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("ExplainError(%v) does not wrap the original", tc.err)
		}
	}
	if awsx.ExplainError(nil) != nil {
		t.Error("ExplainError(nil) != nil")
	}
}
