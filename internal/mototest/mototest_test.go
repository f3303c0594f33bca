package mototest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestSharedIsOneServer(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatalf("Shared returned two servers: %s and %s", a.URL, b.URL)
	}
	if !strings.HasPrefix(a.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %q, want a loopback URL", a.URL)
	}
	t.Logf("moto_server answered %s after exec", a.StartupTime())
}

func TestStartStopsTheServerAtCleanup(t *testing.T) {
	var s *Server
	t.Run("uses a server", func(t *testing.T) {
		s = Start(t)
		callerAccount(t, s.Config(t, "us-east-1"))
		t.Logf("moto_server answered %s after exec", s.StartupTime())
	})
	if s == nil {
		t.Fatal("subtest did not start a server")
	}
	select {
	case <-s.exited:
	default:
		t.Fatal("moto_server still running after the test that started it ended")
	}
	if runtime.GOOS == "linux" {
		// The whole process group is gone, not only the process we started.
		if err := syscall.Kill(-s.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d: kill 0 = %v, want ESRCH", s.cmd.Process.Pid, err)
		}
	}
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections", s.URL)
	}
}

func TestConfigActsInTheDefaultAccount(t *testing.T) {
	s := Shared(t)
	if got := callerAccount(t, s.Config(t, "us-east-1")); got != DefaultAccountID {
		t.Errorf("GetCallerIdentity account = %s, want %s", got, DefaultAccountID)
	}
}

func TestConfigForAccountKeepsAccountsApart(t *testing.T) {
	s := Shared(t)
	a, b := s.NewAccount(), s.NewAccount()
	if a == b || len(a) != 12 || a == DefaultAccountID {
		t.Fatalf("NewAccount returned %q and %q", a, b)
	}
	cfgA := s.ConfigForAccount(t, "us-east-1", a)
	cfgB := s.ConfigForAccount(t, "us-east-1", b)
	if got := callerAccount(t, cfgA); got != a {
		t.Errorf("GetCallerIdentity account = %s, want %s", got, a)
	}
	createGroup(t, cfgA, "only-in-a")
	if n := countGroups(t, cfgA, "only-in-a"); n != 1 {
		t.Errorf("account %s sees %d groups named only-in-a, want 1", a, n)
	}
	if n := countGroups(t, cfgB, "only-in-a"); n != 0 {
		t.Errorf("account %s sees %d groups named only-in-a, want 0", b, n)
	}
	// A fresh account still has moto's default public AMIs.
	out, err := ec2.NewFromConfig(cfgB).DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil {
		t.Fatalf("DescribeImages in %s: %v", b, err)
	}
	if len(out.Images) == 0 {
		t.Errorf("account %s has no default AMIs", b)
	}
}

func TestRegionsAreApart(t *testing.T) {
	s := Shared(t)
	acct := s.NewAccount()
	east := s.ConfigForAccount(t, "us-east-1", acct)
	west := s.ConfigForAccount(t, "eu-west-1", acct)
	createGroup(t, west, "only-in-eu-west-1")
	if n := countGroups(t, west, "only-in-eu-west-1"); n != 1 {
		t.Errorf("eu-west-1 sees %d groups, want 1", n)
	}
	if n := countGroups(t, east, "only-in-eu-west-1"); n != 0 {
		t.Errorf("us-east-1 sees %d groups, want 0", n)
	}
}

func TestResetEmptiesTheServer(t *testing.T) {
	s := Start(t) // Reset would disturb other tests on the shared server.
	cfg := s.Config(t, "us-east-1")
	createGroup(t, cfg, "before-reset")
	s.Reset(t)
	if n := countGroups(t, cfg, "before-reset"); n != 0 {
		t.Errorf("after Reset %d groups named before-reset remain", n)
	}
}

func TestFindServerHonoursMotoServer(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-moto_server")
	t.Setenv("MOTO_SERVER", missing)
	_, err := findServer()
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("findServer with MOTO_SERVER=%s: err = %v, want it to name the path", missing, err)
	}
}

// recordingTB records how unavailable ended a test.
type recordingTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, format
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, format
	runtime.Goexit()
}

func TestUnavailableFailsInCIAndSkipsElsewhere(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := &recordingTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				unavailable(r, errors.New("moto_server not found: run make test or scripts/moto-venv.sh"))
			}()
			<-done
			if ci == "" && (!r.skipped || r.failed) {
				t.Errorf("without CI: skipped=%v failed=%v, want a skip", r.skipped, r.failed)
			}
			if ci != "" && (!r.failed || r.skipped) {
				t.Errorf("with CI: skipped=%v failed=%v, want a failure", r.skipped, r.failed)
			}
		})
	}
}

func callerAccount(t *testing.T, cfg aws.Config) string {
	t.Helper()
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	return aws.ToString(out.Account)
}

func createGroup(t *testing.T, cfg aws.Config, name string) {
	t.Helper()
	_, err := ec2.NewFromConfig(cfg).CreateSecurityGroup(context.Background(), &ec2.CreateSecurityGroupInput{
		GroupName:   aws.String(name),
		Description: aws.String("mototest"),
	})
	if err != nil {
		t.Fatalf("CreateSecurityGroup %s in %s: %v", name, cfg.Region, err)
	}
}

func countGroups(t *testing.T, cfg aws.Config, name string) int {
	t.Helper()
	out, err := ec2.NewFromConfig(cfg).DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{
		Filters: []ec2types.Filter{{Name: aws.String("group-name"), Values: []string{name}}},
	})
	if err != nil {
		t.Fatalf("DescribeSecurityGroups in %s: %v", cfg.Region, err)
	}
	return len(out.SecurityGroups)
}
