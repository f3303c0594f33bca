package launch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/launch"
)

// TestAnAlarmInAlarmFailsTheGate: the fleet's CloudWatch alarms must be
// OK for the new group to pass the gate; one that does not exist is
// refused before anything changes.
func TestAnAlarmInAlarmFailsTheGate(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	cw := awsx.NewCloudWatch(w.cfg, region) // the client bakery uses
	ctx := context.Background()
	_, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{AlarmName: aws.String("web-5xx"), MetricName: aws.String("HTTPCode_Target_5XX_Count"),
		Namespace: aws.String("AWS/ApplicationELB"), Statistic: cwtypes.StatisticSum, Period: aws.Int32(60), EvaluationPeriods: aws.Int32(1),
		Threshold: aws.Float64(10), ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold})
	if err != nil {
		t.Fatal(err)
	}
	setAlarm := func(state cwtypes.StateValue) {
		t.Helper()
		if _, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String("web-5xx"), StateValue: state, StateReason: aws.String("test")}); err != nil {
			t.Fatal(err)
		}
	}
	l := w.launcher(launch.WithAlarms(func(string) launch.Alarms { return cw }))
	before := w.serving(l)
	f := w.fleet()
	f.Alarms = []string{"web-5xx"}

	setAlarm(cwtypes.StateValueAlarm)
	_, err = w.launch(l, launch.Request{Fleet: f})
	if err == nil || !strings.Contains(err.Error(), "2/2 InService, 2/2 healthy in tg web, 0/1 alarms OK; alarm web-5xx is ALARM") {
		t.Errorf("a launch with its alarm in ALARM: %v", err)
	}
	w.requireUntouched(before)
	w.requireOnly("web-prod-v001:serving")

	missing := w.fleet()
	missing.Alarms = []string{"web-5xx", "nosuch"}
	snap := w.everything()
	if _, err := w.launch(l, launch.Request{Fleet: missing}); err == nil || !strings.Contains(err.Error(), "alarm nosuch of fleet prod does not exist in us-east-1") {
		t.Errorf("a launch with an alarm that does not exist: %v", err)
	}
	if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(snap) {
		t.Errorf("a refused launch changed the account:\nbefore %+v\nafter  %+v", snap, after)
	}

	setAlarm(cwtypes.StateValueOk)
	r := w.mustLaunch(l, launch.Request{Fleet: f})
	w.requireOnly("web-prod-v001:disabled", r.Group+":serving")
}
