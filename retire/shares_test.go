package retire_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/retire"
)

// TestRetireKeepsTheAMIsAStageAccountMayLaunch: prod shares its AMIs with
// an account. 1.0.0 was prod's before 1.1.0: a promotion does not take
// the share back, so prod's account may still launch it, and with
// keep_previous 0 only the share keeps it, with its own reason.
func TestRetireKeepsTheAMIsAStageAccountMayLaunch(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	w.bake(t, "1.1.0", 20*day)
	w.bake(t, "1.2.0", 10*day)
	const account = "111122223333"
	store := w.store()
	for _, v := range []string{"1.0.0", "1.1.0"} {
		entries, err := store.Entries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Version == v {
				if err := store.Promote(ctx, e, catalog.StageSpec{Name: "prod", Accounts: []string{account}}, catalog.Event{Actor: "tester"}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	retirer := func(opts ...retire.Option) *retire.AMIs {
		clients := awsx.NewRegional(func(r string) *ec2.Client { return awsx.NewEC2(w.cfg, r) })
		ops := catalogami.NewOps(func(r string) catalogami.API { return clients.Get(r) }, time.Millisecond, nil)
		return retire.NewAMIs("web", "web", w.store(), catalogami.NewStoreFromConfig(w.cfg), ops, fleet.UsageClientsFromConfig(w.cfg),
			append([]retire.Option{retire.WithClock(func() time.Time { return now })}, opts...)...)
	}
	policy := retire.Policy{KeepLast: 1, KeepPrevious: 0}
	got := decided(w.plan(t, retirer(retire.WithStageAccounts(map[string][]string{"prod": {account}, "dev": nil})), policy))
	want := map[string]string{
		"1.2.0": "keep: newest 1",
		"1.1.0": "keep: in prod; shared with prod account " + account + " (current)",
		"1.0.0": "keep: shared with prod account " + account + " (previous)",
	}
	if !equalMaps(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", lines(got), lines(want))
	}
	// Without the stage's accounts, nothing but the policy keeps 1.0.0.
	if got := decided(w.plan(t, retirer(), policy)); got["1.0.0"] != "remove" {
		t.Errorf("1.0.0 without stage accounts: %s, want remove", got["1.0.0"])
	}
}
