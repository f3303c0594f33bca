// Package awsx loads the AWS configuration bakery's AWS code paths share: the
// standard credential and region chain, an endpoint override that points every
// service at an emulator (moto_server in the tests), retries with backoff, and
// per-region clients. ExplainError turns AWS API errors into messages that say
// what to do next.
package awsx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
)

// EndpointEnv names the environment variable that, when set, overrides the
// endpoint of every AWS service bakery calls (for example
// http://127.0.0.1:5000 for a local moto_server). It must be an https URL,
// or an http URL on a loopback host (127.0.0.0/8, ::1, localhost).
const EndpointEnv = "BAKERY_AWS_ENDPOINT"

// DefaultMaxAttempts is how many times Load's retryer tries a call (the first
// try included) before it gives up on a throttled or transiently failing call.
const DefaultMaxAttempts = 8

// DefaultMaxBackoff caps the jittered exponential delay between two tries. The
// delay starts near 1 s after a throttling error and near 50 ms after other
// transient errors, and doubles with each try.
const DefaultMaxBackoff = 10 * time.Second

// ErrNoRegion is returned by Load when neither WithRegion nor the credential
// chain (AWS_REGION, AWS_DEFAULT_REGION, the profile) names a region.
var ErrNoRegion = errors.New("no AWS region: set AWS_REGION or region in your profile, or name regions in the recipe")

// Option configures Load.
type Option func(*options)

type options struct {
	region      string
	getenv      func(string) string
	endpoint    string
	maxAttempts int
	credentials aws.CredentialsProvider
}

// WithRegion sets the default region of the returned config. The default is
// the region the SDK's chain resolves: AWS_REGION, AWS_DEFAULT_REGION, then
// the region of the active profile. Callers that know their regions (from a
// recipe) pass one here, so that a missing default region is not an error.
func WithRegion(region string) Option {
	return func(o *options) { o.region = region }
}

// WithGetenv sets the function Load reads bakery's own environment variables
// (EndpointEnv) through. The default is os.Getenv. The SDK's chain (AWS_*
// variables, shared config files) always reads the process environment.
func WithGetenv(getenv func(string) string) Option {
	return func(o *options) { o.getenv = getenv }
}

// WithEndpoint sends every service's requests to endpoint (a URL such as
// http://127.0.0.1:5000) instead of AWS. The default is the value of
// EndpointEnv, and when that is empty the SDK's own resolution (AWS's
// endpoints, or AWS_ENDPOINT_URL). WithEndpoint wins over EndpointEnv.
func WithEndpoint(endpoint string) Option {
	return func(o *options) { o.endpoint = endpoint }
}

// WithMaxAttempts sets how many times a call is tried in all. The default is
// DefaultMaxAttempts; values below 1 keep the default.
func WithMaxAttempts(n int) Option {
	return func(o *options) { o.maxAttempts = n }
}

// WithCredentials uses provider instead of the SDK's credential chain
// (environment, shared profiles, SSO, web identity, IMDS). The default is
// that chain.
func WithCredentials(provider aws.CredentialsProvider) Option {
	return func(o *options) { o.credentials = provider }
}

// Load returns the AWS configuration bakery uses: the SDK's standard
// credential and region chain (environment, shared profiles, SSO), the
// endpoint override of WithEndpoint or EndpointEnv as the BaseEndpoint of
// every service, and a standard retryer with jittered exponential backoff
// (DefaultMaxAttempts tries, at most DefaultMaxBackoff apart, no client-side
// retry quota). It returns ErrNoRegion when no region is known.
func Load(ctx context.Context, opts ...Option) (aws.Config, error) {
	o := options{getenv: os.Getenv, maxAttempts: DefaultMaxAttempts}
	for _, opt := range opts {
		opt(&o)
	}
	if o.getenv == nil {
		o.getenv = os.Getenv
	}
	if o.maxAttempts < 1 {
		o.maxAttempts = DefaultMaxAttempts
	}

	endpoint, source := o.endpoint, "WithEndpoint"
	if endpoint == "" {
		endpoint, source = o.getenv(EndpointEnv), EndpointEnv
	}
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return aws.Config{}, fmt.Errorf("loading AWS config: %s: %w", source, err)
		}
	}

	maxAttempts := o.maxAttempts
	loadOpts := []func(*config.LoadOptions) error{
		// The SDK's own warnings (IMDS fallbacks) would interleave with
		// bakery's output; its errors reach the caller anyway.
		config.WithLogger(logging.Nop{}),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = maxAttempts
				so.MaxBackoff = DefaultMaxBackoff
				// A bake runs for minutes and waits on EC2 most of that time;
				// the client-side retry quota would turn a burst of throttling
				// into "retry quota exceeded" failures.
				so.RateLimiter = ratelimit.None
			})
		}),
	}
	if o.region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.region))
	}
	if o.credentials != nil {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(o.credentials))
	}

	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		var noProfile config.SharedConfigProfileNotExistError
		if errors.As(err, &noProfile) {
			return aws.Config{}, fmt.Errorf("loading AWS config: profile %q does not exist: check AWS_PROFILE and ~/.aws/config: %w", noProfile.Profile, err)
		}
		return aws.Config{}, fmt.Errorf("loading AWS config: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, ErrNoRegion
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	// Every call goes through the verbs' permissions (permissions.go).
	env := func(k string) string { return cmp.Or(o.getenv(k), os.Getenv(k)) }
	mw := permissions{strict: env(StrictEnv) == "1", record: &recorder{path: env(RecordEnv)}}
	cfg.APIOptions = append(cfg.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(mw, middleware.After)
	})
	// Fail once, clearly, rather than on every call with the SDK's chain
	// of provider errors.
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return aws.Config{}, fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	return cfg, nil
}

// ErrNoCredentials is returned by Load when the credential chain finds
// no credentials.
var ErrNoCredentials = errors.New("no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or log in with aws sso login")

// checkEndpoint accepts an absolute https URL, and an http URL only
// when its host is loopback (127.0.0.0/8, ::1 or localhost), as a local
// emulator's is: over plain http anywhere else, bakery's signed requests
// and the answers it acts on (which AMI to launch, what to delete) would
// cross the network unprotected.
func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q is not an http(s) URL: set it to one such as http://127.0.0.1:5000, or unset it to call AWS", endpoint)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return fmt.Errorf("endpoint %q uses plain http to a host that is not loopback: use https (https://%s), or run the emulator on 127.0.0.1, ::1 or localhost",
			endpoint, u.Host)
	}
	return nil
}

// loopbackHost reports whether host (a URL's host without port) is
// "localhost" or an address in 127.0.0.0/8 or ::1.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
