package ami_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go/middleware"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// TestBakeRunsBuilderWithInstanceProfile: iam_instance_profile reaches
// RunInstances as IamInstanceProfile{Name}, and moto (which refuses a
// profile that does not exist in the account) attaches it to the builder.
// Without the attribute the builder runs without a profile.
func TestBakeRunsBuilderWithInstanceProfile(t *testing.T) {
	for _, c := range []struct{ name, line, want string }{
		{"with a profile", `  iam_instance_profile = "bakery-builder"`, "bakery-builder"},
		{"without", ``, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newBakeEnv(t)
			ctx := context.Background()
			e.createInstanceProfile("bakery-builder")
			var runs runInstancesCapture
			cfg := e.cfg.Copy()
			cfg.APIOptions = append(cfg.APIOptions, runs.capture)
			b, err := ami.NewBaker(cfg, ami.WithPollInterval(20*time.Millisecond), ami.WithCleanupTimeout(time.Minute), fixedID("bk-iam"))
			if err != nil {
				t.Fatal(err)
			}
			r, m := bakeRecipe(t, `
  region         = "us-east-1"
  source_ami_ssm = "`+bakeAL2023SSM+`"
`+c.line)
			p, err := b.Prepare(ctx, r, m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Build(ctx, p); err != nil {
				t.Fatalf("Build: %v", err)
			}
			in := runs.all()
			if len(in) != 1 {
				t.Fatalf("RunInstances called %d times, want once", len(in))
			}
			got := ""
			if in[0].IamInstanceProfile != nil {
				if in[0].IamInstanceProfile.Arn != nil {
					t.Errorf("IamInstanceProfile.Arn = %q, want only the name", aws.ToString(in[0].IamInstanceProfile.Arn))
				}
				got = aws.ToString(in[0].IamInstanceProfile.Name)
			}
			if got != c.want {
				t.Errorf("RunInstances IamInstanceProfile.Name = %q, want %q", got, c.want)
			}
		})
	}
}

// TestBakeWithMissingInstanceProfileFailsNamingTheAttribute: a profile
// the account does not have fails the launch; the error points at the
// recipe's iam_instance_profile line and nothing is left behind.
func TestBakeWithMissingInstanceProfileFailsNamingTheAttribute(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()
	b := e.baker(fixedID("bk-iam-missing"))
	r, m := bakeRecipe(t, `
  region               = "us-east-1"
  source_ami_ssm       = "`+bakeAL2023SSM+`"
  iam_instance_profile = "no-such-profile"`)
	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, p)
	wantErrContains(t, err, "web.bake.hcl:10:26", `instance profile "no-such-profile"`, "iam:PassRole", "bakery iam-policy bake -f RECIPE --role ROLE")
	e.assertNoLeftovers("us-east-1")
}

// runInstancesCapture records the input of every RunInstances call made
// with a config whose APIOptions hold its capture method.
type runInstancesCapture struct {
	mu  sync.Mutex
	ins []ec2.RunInstancesInput
}

func (c *runInstancesCapture) capture(s *middleware.Stack) error {
	return s.Initialize.Add(middleware.InitializeMiddlewareFunc("bakery-test-capture-run-instances",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if ri, ok := in.Parameters.(*ec2.RunInstancesInput); ok {
				c.mu.Lock()
				c.ins = append(c.ins, *ri)
				c.mu.Unlock()
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func (c *runInstancesCapture) all() []ec2.RunInstancesInput {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ec2.RunInstancesInput(nil), c.ins...)
}

// createInstanceProfile creates instance profile name in e's account
// with IAM's query API (CreateInstanceProfile), signed as the SDK would:
// moto refuses RunInstances with a profile it does not know.
func (e *bakeEnv) createInstanceProfile(name string) {
	e.t.Helper()
	ctx := context.Background()
	body := url.Values{"Action": {"CreateInstanceProfile"}, "Version": {"2010-05-08"}, "InstanceProfileName": {name}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set(mototest.AccountHeader, e.account)
	creds, err := e.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "iam", "us-east-1", time.Now()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("creating instance profile %s: %v", name, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("creating instance profile %s: %s\n%s", name, resp.Status, out)
	}
}
