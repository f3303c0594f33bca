package awsx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// Verb names the bakery commands that share one IAM policy (bakery
// iam-policy VERB): a nightly job bakes, a release manager promotes, a
// pipeline launches and retires.
type Verb string

// The verbs with a policy of their own.
const (
	// VerbBake is bake.
	VerbBake Verb = "bake"
	// VerbPromote is promote, revoke and unrevoke (and approve).
	VerbPromote Verb = "promote"
	// VerbLaunch is launch and rollback.
	VerbLaunch Verb = "launch"
	// VerbRetire is retire.
	VerbRetire Verb = "retire"
	// VerbSweep is sweep.
	VerbSweep Verb = "sweep"
	// VerbStatus is every command that only reads: status, history,
	// outdated, fleets, serve, sbom and provenance.
	VerbStatus Verb = "status"
	// VerbAdopt is adopt.
	VerbAdopt Verb = "adopt"
)

// Verbs are every verb, in the order bakery iam-policy lists them.
var Verbs = []Verb{VerbBake, VerbPromote, VerbLaunch, VerbRetire, VerbSweep, VerbStatus, VerbAdopt}

// StrictEnv names the environment variable that, set to 1, makes Load's
// clients refuse, before sending it, any call the running verb's policy
// (Permissions) does not list. The tests run every command so: a call
// bakery makes that its policy lacks fails the test instead of failing a
// user on a real account.
const StrictEnv = "BAKERY_IAM_STRICT"

// RecordEnv names the environment variable that, set to a file path,
// makes Load's clients append "VERB ACTION" to that file for every call
// they make under a verb: how the Permissions table is checked against
// the calls a test run made.
const RecordEnv = "BAKERY_IAM_RECORD"

type verbKey struct{}

// WithVerb returns ctx carrying v: the AWS calls made with it are the
// verb's (checked against its policy, and explained in its terms when
// AWS denies them).
func WithVerb(ctx context.Context, v Verb) context.Context {
	return context.WithValue(ctx, verbKey{}, v)
}

// VerbOf returns the verb ctx carries, if any.
func VerbOf(ctx context.Context) (Verb, bool) {
	v, ok := ctx.Value(verbKey{}).(Verb)
	return v, ok
}

// PermissionError is a call AWS denied (AccessDenied,
// UnauthorizedOperation) while running a verb, or one strict mode
// refused because the verb's policy does not list it.
type PermissionError struct {
	// Verb is the verb running.
	Verb Verb
	// Action is the IAM action denied (ec2:CreateTags).
	Action string
	// Resource is what it acted on (image/ami-…), when bakery can tell.
	Resource string
	// Unlisted is true when strict mode refused a call the verb's
	// policy does not list (a bakery bug), rather than AWS.
	Unlisted bool
	// Err is AWS's error (nil when Unlisted).
	Err error
}

func (e *PermissionError) Error() string {
	on := ""
	if e.Resource != "" {
		on = " on " + e.Resource
	}
	if e.Unlisted {
		return fmt.Sprintf("bakery %s called %s%s, which `bakery iam-policy %s` does not grant: this is a bakery bug, please report it", e.Verb, e.Action, on, e.Verb)
	}
	return fmt.Sprintf("AWS denied %s%s to bakery %s: the IAM policy of the identity in use lacks it: add %q to it (`bakery iam-policy %s -f RECIPE` prints the whole policy %s needs): %v",
		e.Action, on, e.Verb, e.Action, e.Verb, e.Verb, e.Err)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// permissions is the Initialize middleware Load adds to every client.
type permissions struct {
	strict bool
	record *recorder
}

func (permissions) ID() string { return "bakery/permissions" }

func (p permissions) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	verb, ok := VerbOf(ctx)
	if !ok {
		return next.HandleInitialize(ctx, in)
	}
	action := iamAction(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx))
	p.record.add(verb, action)
	if p.strict && !Grants(verb, action) {
		return middleware.InitializeOutput{}, middleware.Metadata{}, &PermissionError{Verb: verb, Action: action, Resource: resourceOf(in.Parameters), Unlisted: true}
	}
	out, md, err := next.HandleInitialize(ctx, in)
	if denied(err) {
		err = &PermissionError{Verb: verb, Action: action, Resource: resourceOf(in.Parameters), Err: err}
	}
	return out, md, err
}

// denied reports whether err is AWS refusing a call for want of
// permission: an AccessDenied or UnauthorizedOperation code, or an HTTP
// 403 whose body did not decode (an emulator answering a JSON protocol
// in XML).
func denied(err error) bool {
	if err == nil {
		return false
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return deniedCodes[apiErr.ErrorCode()]
	}
	var re interface{ HTTPStatusCode() int } // *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
}

// recorder appends the calls to the file of RecordEnv.
type recorder struct {
	mu   sync.Mutex
	path string
}

func (r *recorder) add(v Verb, action string) {
	if r == nil || r.path == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return // a record is for tests; the call goes on
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", v, action)
}

// resourceOf names what a call acts on, from its input's usual fields:
// the EC2 resource (image/ami-…, snapshot/snap-…, instance/i-…), the
// group, the template or the S3 object.
func resourceOf(params any) string {
	v := reflect.ValueOf(params)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return ""
	}
	str := func(name string) string {
		f := v.FieldByName(name)
		switch {
		case !f.IsValid():
			return ""
		case f.Kind() == reflect.Pointer && !f.IsNil() && f.Elem().Kind() == reflect.String:
			return f.Elem().String()
		case f.Kind() == reflect.String:
			return f.String()
		case f.Kind() == reflect.Slice && f.Len() > 0 && f.Index(0).Kind() == reflect.String:
			return f.Index(0).String()
		}
		return ""
	}
	if b := str("Bucket"); b != "" {
		return "arn:aws:s3:::" + strings.TrimSuffix(b+"/"+str("Key"), "/")
	}
	for _, name := range []string{"Resources", "ImageId", "ImageIds", "SnapshotId", "SnapshotIds", "InstanceIds", "GroupId", "LaunchTemplateId"} {
		if id := str(name); id != "" {
			return ec2Resource(id)
		}
	}
	if n := str("AutoScalingGroupName"); n != "" {
		return "autoScalingGroupName/" + n
	}
	if n := str("LaunchTemplateName"); n != "" {
		return "launch-template/" + n
	}
	if n := str("KeyName"); n != "" {
		return "key-pair/" + n
	}
	return ""
}

// ec2Resource spells an EC2 id as IAM names the resource: image/ami-….
func ec2Resource(id string) string {
	for prefix, kind := range map[string]string{"ami-": "image", "snap-": "snapshot", "i-": "instance", "sg-": "security-group", "lt-": "launch-template", "vol-": "volume", "key-": "key-pair"} {
		if strings.HasPrefix(id, prefix) {
			return kind + "/" + id
		}
	}
	return id
}

// Grants reports whether the policy of v lists action.
func Grants(v Verb, action string) bool {
	return slices.ContainsFunc(Permissions[v], func(p Permission) bool { return p.Action == action })
}
