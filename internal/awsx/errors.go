package awsx

import (
	"errors"
	"strings"

	"github.com/aws/smithy-go"
)

// ErrorCode returns the AWS error code of err ("InvalidAMIID.NotFound"),
// or "" when err is not an AWS API error.
func ErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// IsNotFound reports whether err says the resource does not exist (any
// more, or not yet: EC2 is eventually consistent): codes ending in
// ".NotFound" or ".Unavailable", and the few that do not follow the
// pattern.
func IsNotFound(err error) bool {
	code := ErrorCode(err)
	return strings.HasSuffix(code, ".NotFound") || strings.HasSuffix(code, ".Unavailable") ||
		strings.HasSuffix(code, "NotFoundException") || code == "NoSuchKey" || code == "NotFound"
}

// IsInUse reports whether err says the resource cannot go yet because
// something still uses it: a security group of an instance still
// terminating, a snapshot of an AMI just deregistered.
func IsInUse(err error) bool {
	code := ErrorCode(err)
	return code == "DependencyViolation" || strings.HasSuffix(code, ".InUse") || code == "ResourceInUse"
}

// IsThrottle reports whether err is AWS asking the caller to slow down.
func IsThrottle(err error) bool { return throttleCodes[ErrorCode(err)] }

// IsQuota reports whether err is an AWS quota that frees itself in time
// (ResourceLimitExceeded: too many concurrent AMI copies), so waiting and
// trying again can succeed.
func IsQuota(err error) bool {
	code := ErrorCode(err)
	return code == "ResourceLimitExceeded" || code == "PendingSnapshotLimitExceeded"
}
