package ami_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

// TestLifecycleRevokeMarksEveryDuplicate: a bake killed after its AMI
// was complete, then run again, leaves two complete AMIs of one version
// in a region. Revoking the version marks both (AMI and snapshots) and
// takes both away from the accounts they were shared with; before, only
// the one the catalog shows was marked, and once revocation took it out
// of its stage the other, newer one stood for the version: not revoked,
// shared, promotable. Afterwards the catalog shows one revoked version
// with one revoke event, promotion is refused, and unrevoking lifts the
// mark from both and gives both their accounts back.
func TestLifecycleRevokeMarksEveryDuplicate(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	staged := a.bake(t, "1.0.0", east)[east]
	s := newStore(a.config(t), []string{east})
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), catalog.StageSpec{Name: "prod", Accounts: []string{"111122223333"}}, catalog.Event{Time: at(1), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	dup := bakeAMI(t, a.client(t, east), east, tags("1.0.0", "sha256:key-1.0.0", "bk-again", "2026-06-01T00:00:00Z"))
	if _, err := a.client(t, east).ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(dup),
		LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{UserId: aws.String("444455556666")}}}}); err != nil {
		t.Fatal(err)
	}
	if e := entry(t, s, "1.0.0"); e.Reference != staged {
		t.Fatalf("before the revocation the catalog shows %s, want the staged %s", e.Reference, staged)
	}

	if err := s.Revoke(ctx, entry(t, s, "1.0.0"), catalog.Event{Time: at(10), Actor: "sec team", Reason: "CVE-2026-1"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{staged, dup} {
		for i, tg := range append([]map[string]string{a.imageTags(t, east, id)}, a.snapshotTags(t, east, id)...) {
			if v := tg[catalogami.TagRevoked]; !strings.HasPrefix(v, "2026-03-02T00:00:10Z sec%20team CVE-2026-1") {
				t.Errorf("%s (tags %d of AMI and snapshots): revoked = %q, want the revocation", id, i, v)
			}
			for k := range tg {
				if strings.HasPrefix(k, catalogami.TagStagePrefix) {
					t.Errorf("%s still tagged %s after revoke", id, k)
				}
			}
		}
		if got, _ := a.launchers(t, east, id); len(got) != 0 {
			t.Errorf("%s may still be launched by %v after revoke", id, got)
		}
	}

	fresh := newStore(a.config(t), []string{east})
	es, err := fresh.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Version != "1.0.0" || len(es[0].Locations) != 1 {
		t.Fatalf("entries = %+v, want one version in one location", es)
	}
	e := es[0]
	if !e.Revoked || e.RevokeReason != "CVE-2026-1" || len(e.Stages) != 0 {
		t.Errorf("after revoke: %+v", e.Lifecycle)
	}
	if got := actions(e.Events); strings.Join(got, " ") != "bake promote:prod revoke" {
		t.Errorf("events = %v", got)
	}
	err = fresh.Promote(ctx, e, catalog.StageSpec{Name: "prod"}, catalog.Event{Time: at(11), Actor: actor})
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("promoting the revoked version = %v, want a refusal", err)
	}
	for _, id := range []string{staged, dup} {
		for k := range a.imageTags(t, east, id) {
			if strings.HasPrefix(k, catalogami.TagStagePrefix) {
				t.Errorf("%s tagged %s after a refused promotion", id, k)
			}
		}
	}

	if err := fresh.Unrevoke(ctx, e, catalog.Event{Time: at(12), Actor: actor, Reason: "false alarm"}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{staged: "111122223333", dup: "444455556666"} {
		for i, tg := range append([]map[string]string{a.imageTags(t, east, id)}, a.snapshotTags(t, east, id)...) {
			if v, ok := tg[catalogami.TagRevoked]; ok {
				t.Errorf("%s (tags %d of AMI and snapshots) still revoked: %q", id, i, v)
			}
		}
		if got, _ := a.launchers(t, east, id); !slices.Equal(got, []string{want}) {
			t.Errorf("%s may be launched by %v after unrevoke, want %s back", id, got, want)
		}
	}
	if e := entry(t, fresh, "1.0.0"); e.Revoked || strings.Join(actions(e.Events), " ") != "bake promote:prod revoke unrevoke" {
		t.Errorf("after unrevoke: revoked %v, events %v", e.Revoked, actions(e.Events))
	}
}

// TestLifecycleRevokeFinishesWhatAKilledRevocationLeft: a revocation
// killed after it marked one AMI of the version (of two in a region, and
// one in another region) leaves a version that is revoked but not
// everywhere. The catalog says so (RevokeUnfinished), so that running
// revoke again is not "nothing to do", and that run marks the rest with
// the first revocation.
func TestLifecycleRevokeFinishesWhatAKilledRevocationLeft(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	ids := a.bake(t, "1.0.0", east, eu)
	dup := bakeAMI(t, a.client(t, east), east, tags("1.0.0", "sha256:key-1.0.0", "bk-again", "2026-06-01T00:00:00Z"))
	first := "2026-03-02T00:00:05Z sec%20team CVE-2026-1"
	if _, err := a.client(t, east).CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{ids[east]},
		Tags: []ec2types.Tag{{Key: aws.String(catalogami.TagRevoked), Value: aws.String(first)}}}); err != nil {
		t.Fatal(err)
	}
	s := newStore(a.config(t), []string{east, eu})
	e := entry(t, s, "1.0.0")
	if !e.Revoked || !e.RevokeUnfinished || e.RevokeReason != "CVE-2026-1" {
		t.Fatalf("half revoked: %+v, want revoked (CVE-2026-1) and unfinished", e.Lifecycle)
	}
	if err := s.Revoke(ctx, e, catalog.Event{Time: at(10), Actor: "sec team", Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	for _, at := range []struct{ region, id string }{{east, ids[east]}, {east, dup}, {eu, ids[eu]}} {
		if v := a.imageTags(t, at.region, at.id)[catalogami.TagRevoked]; v != first {
			t.Errorf("%s in %s: revoked = %q, want the first revocation %q", at.id, at.region, v, first)
		}
	}
	if e := entry(t, newStore(a.config(t), []string{east, eu}), "1.0.0"); !e.Revoked || e.RevokeUnfinished {
		t.Errorf("after the second run: %+v, want revoked and finished", e.Lifecycle)
	}
}
