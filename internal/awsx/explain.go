package awsx

import (
	"errors"
	"strings"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
)

// Error codes ExplainError recognises, grouped by what the user should do.
var (
	deniedCodes = codes("UnauthorizedOperation", "AccessDenied", "AccessDeniedException",
		"UnauthorizedAccess")
	authCodes = codes("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch",
		"UnrecognizedClientException", "IncompleteSignature", "MissingAuthenticationToken",
		"InvalidAccessKeyId")
	expiredCodes = codes("ExpiredToken", "ExpiredTokenException")
	clockCodes   = codes("RequestExpired", "RequestTimeTooSkewed")
	optInCodes   = codes("OptInRequired")
	amiCodes     = codes("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable")
	paramCodes   = codes("InvalidParameterValue", "InvalidParameter", "InvalidParameterCombination",
		"MissingParameter", "ValidationError", "ValidationException")
	throttleCodes = codes("RequestLimitExceeded", "Throttling", "ThrottlingException",
		"ThrottledException", "TooManyRequestsException", "EC2ThrottledException", "RequestThrottled")
	quotaCodes = codes("InstanceLimitExceeded", "VcpuLimitExceeded", "ResourceLimitExceeded",
		"LimitExceeded", "AMIQuotaExceeded")
)

func codes(list ...string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, c := range list {
		m[c] = true
	}
	return m
}

// explainedError is an AWS error with a message saying what to do about it.
type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *explainedError) Unwrap() error { return e.err }

// ExplainError returns err with a message in front that says what went wrong
// in user terms and what to do next, when err is an AWS error it recognises:
// denied permissions (UnauthorizedOperation, AccessDenied), rejected or
// expired credentials (AuthFailure, InvalidClientTokenId, ExpiredToken),
// missing credentials, clock skew, regions not enabled, unknown AMIs
// (InvalidAMIID.*), rejected parameters (InvalidParameterValue and kin),
// throttling that outlasted the retries (RequestLimitExceeded and kin) and
// quotas. The message names the call as an IAM action (ec2:DescribeImages).
// The result wraps err, so errors.As still finds the smithy.APIError. Other
// errors, nil and errors already explained are returned unchanged.
func ExplainError(err error) error {
	if err == nil {
		return nil
	}
	var done *explainedError
	var denied *PermissionError
	if errors.As(err, &done) || errors.As(err, &denied) {
		return err
	}
	action := "an AWS API"
	var opErr *smithy.OperationError
	if errors.As(err, &opErr) {
		action = iamAction(opErr.Service(), opErr.Operation())
	}

	var signErr *v4.SigningError
	var apiErr smithy.APIError
	var msg string
	switch {
	case errors.As(err, &apiErr):
		msg = explainCode(apiErr.ErrorCode(), action)
	case errors.As(err, &signErr):
		msg = "no usable AWS credentials calling " + action +
			": set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or log in with aws sso login"
	}
	if msg == "" {
		return err
	}
	return &explainedError{msg: msg, err: err}
}

// explainCode returns the message for an API error code, or "" for codes it
// does not know.
func explainCode(code, action string) string {
	switch {
	case deniedCodes[code]:
		return "not allowed to call " + action +
			": grant that permission to the AWS identity in use (aws sts get-caller-identity shows which one;" +
			" aws sts decode-authorization-message decodes an encoded reason)"
	case authCodes[code]:
		return "AWS rejected the credentials calling " + action +
			": check AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or log in again with aws sso login"
	case expiredCodes[code]:
		return "AWS credentials expired calling " + action + ": refresh them (aws sso login) and retry"
	case clockCodes[code]:
		return "AWS rejected the request time calling " + action + ": check this machine's clock (sync it with NTP) and retry"
	case optInCodes[code]:
		return "the region is not enabled for this account calling " + action +
			": enable it in the AWS account settings, or use another region"
	case amiCodes[code]:
		return "image not found calling " + action +
			": check the AMI id and that it exists in this region (AMI ids differ per region) and is shared with this account"
	case paramCodes[code]:
		return "AWS rejected a parameter of " + action +
			": check the value in the recipe or flags that the message below names"
	case throttleCodes[code]:
		return "AWS kept throttling " + action + " after retries: wait a minute and retry, or run fewer bakes at once"
	case quotaCodes[code]:
		return "an AWS quota was reached calling " + action +
			": free capacity (bakery retire, terminate unused instances) or ask AWS for a higher quota"
	}
	return ""
}

// iamAction spells a service ID and operation the way IAM policies name
// them: ec2:DescribeImages, autoscaling:CreateAutoScalingGroup.
func iamAction(service, operation string) string {
	prefix := strings.ToLower(strings.ReplaceAll(service, " ", ""))
	if p, ok := iamPrefixes[prefix]; ok {
		prefix = p
	}
	if a, ok := iamOperations[prefix+":"+operation]; ok {
		return a
	}
	if prefix == "" {
		return operation
	}
	return prefix + ":" + operation
}

// iamPrefixes are the IAM prefixes that differ from the SDK's service ID
// (lower case, without spaces).
var iamPrefixes = map[string]string{
	"elasticloadbalancingv2": "elasticloadbalancing",
}

// iamOperations are the operations IAM authorizes under another action's
// name.
var iamOperations = map[string]string{
	"s3:ListObjectsV2": "s3:ListBucket",
	"s3:ListObjects":   "s3:ListBucket",
	"s3:HeadBucket":    "s3:ListBucket",
	"s3:HeadObject":    "s3:GetObject",
	"s3:DeleteObjects": "s3:DeleteObject",
}
