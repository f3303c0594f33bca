package cli

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// unknownActor is the actor recorded when nothing names one.
const unknownActor = "unknown"

// ciActorEnv are the environment variables in which CI systems name the
// user who started a job, in the order they are tried: GitHub Actions,
// GitLab CI, CircleCI, Buildkite.
var ciActorEnv = []string{"GITHUB_ACTOR", "GITLAB_USER_LOGIN", "CIRCLE_USERNAME", "BUILDKITE_BUILD_CREATOR"}

// actor is who acts: $BAKERY_ACTOR, else the AWS caller identity when AWS
// is in use, else $USER.
func (s *session) actor() string { return s.e.actor(s.c.Context, s.aws) }

// actor decides who acts, for every event bakery records (bakes,
// promotions, revocations, launches, retirements): $BAKERY_ACTOR, else
// the AWS caller identity of cfg (when not nil and it answers), else the
// CI's user (GITHUB_ACTOR, GITLAB_USER_LOGIN, CIRCLE_USERNAME,
// BUILDKITE_BUILD_CREATOR), else $USER, else "unknown". It is never
// empty.
func (e *env) actor(ctx context.Context, cfg *aws.Config) string {
	if a := e.getenv("BAKERY_ACTOR"); a != "" {
		return a
	}
	if cfg != nil {
		out, err := awsx.NewSTS(*cfg, "").GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err == nil && out.Arn != nil {
			return *out.Arn
		}
	}
	for _, k := range append(ciActorEnv, "USER") {
		if a := e.getenv(k); a != "" {
			return a
		}
	}
	return unknownActor
}
