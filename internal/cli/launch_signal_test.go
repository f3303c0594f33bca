package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// TestSIGINTDuringTheHealthWaitUndoesTheLaunch sends SIGINT to the bakery
// binary while a new group waits for its health gate (held back by an
// alarm in ALARM): bakery exits 1, the new group and its template are
// gone, and the serving group is exactly as it was (same capacity, still
// attached, nothing suspended).
func TestSIGINTDuringTheHealthWaitUndoesTheLaunch(t *testing.T) {
	bin := bakeryBinary(t) // before t.Chdir: it builds from the module
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	ctx := context.Background()
	cfg := moto.Config(t, "us-east-1")
	tg := webTargetGroup(t, moto)
	cw := awsx.NewCloudWatch(cfg, "us-east-1")
	if _, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{AlarmName: aws.String("web-5xx"), MetricName: aws.String("HTTPCode_Target_5XX_Count"),
		Namespace: aws.String("AWS/ApplicationELB"), Statistic: cwtypes.StatisticSum, Period: aws.Int32(60), EvaluationPeriods: aws.Int32(1),
		Threshold: aws.Float64(10), ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold}); err != nil {
		t.Fatal(err)
	}
	setAlarm := func(state cwtypes.StateValue) {
		t.Helper()
		if _, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("web-5xx"), StateValue: state, StateReason: aws.String("test")}); err != nil {
			t.Fatal(err)
		}
	}
	src := strings.Replace(launchRecipe(tg), `  healthy_timeout  = "1m"`, `  healthy_timeout  = "30m"
  alarms           = ["web-5xx"]`, 1)
	project := t.TempDir()
	writeFiles(t, project, map[string]string{"recipes/web.bake.hcl": src})
	recipe := filepath.Join(project, "recipes", "web.bake.hcl")
	t.Chdir(project)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		bakeJSON(t, env, "-var", "version="+v, recipe)
	}
	mustRun(t, env, "promote", "web@1.0.0", "--to", "dev")
	mustRun(t, env, "promote", "web@1.0.0", "--to", "prod")
	setAlarm(cwtypes.StateValueOk)
	mustRun(t, env, "-q", "launch", "web", "--stage", "prod")
	mustRun(t, env, "promote", "web@1.1.0", "--to", "dev")
	mustRun(t, env, "promote", "web@1.1.0", "--to", "prod")
	before := accountState(t, moto)

	setAlarm(cwtypes.StateValueAlarm)
	cmd := exec.Command(bin, "launch", "web", "--stage", "prod")
	cmd.Dir = project
	cmd.Env = freshProcessEnv(t, moto, "BAKERY_POLL_INTERVAL=50ms")
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	// Wait until the new group exists (its gate cannot pass while the
	// alarm fires), then interrupt.
	as := autoscaling.NewFromConfig(cfg)
	for created := false; !created; {
		select {
		case <-done:
			t.Fatalf("bakery exited before the new group existed:\n%s", outb.String())
		case <-time.After(50 * time.Millisecond):
		}
		g, err := as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"web-prod-v002"}})
		if err != nil {
			t.Fatal(err)
		}
		created = len(g.AutoScalingGroups) == 1
	}
	time.Sleep(200 * time.Millisecond) // into the health wait's polling
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitFailure {
		t.Errorf("interrupted launch exited %d, want 1:\n%s", code, outb.String())
	}
	if after := accountState(t, moto); after != before {
		t.Errorf("the interrupted launch changed the account:\nbefore %s\nafter  %s\noutput:\n%s", before, after, outb.String())
	}
}
