package ami_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

// A promotion of 1.1.0 to staging killed after it marked 1.1.0 and before
// it took the stage from 1.0.0 leaves staging with two versions. The next
// promotion of 1.1.0 (to prod) finishes it: staging is 1.1.0's alone.
// (Chaos seed 6 found a stage left so.)
func TestPromoteFinishesAStageAKilledPromotionLeftHalfMoved(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	old := a.bake(t, "1.0.0", east)[east]
	cur := a.bake(t, "1.1.0", east)[east]
	s := newStore(a.config(t), []string{east})
	key := catalogami.StageTag("staging")
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), catalog.StageSpec{Name: "staging"}, catalog.Event{Time: at(1), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	oldMark := a.imageTags(t, east, old)[key]
	if oldMark == "" {
		t.Fatal("1.0.0 holds no staging mark after its promotion")
	}
	if err := s.Promote(ctx, entry(t, s, "1.1.0"), catalog.StageSpec{Name: "staging"}, catalog.Event{Time: at(2), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	// The state the killed promotion left: 1.0.0's mark still there.
	if _, err := a.client(t, east).CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{old},
		Tags: []ec2types.Tag{{Key: aws.String(key), Value: aws.String(oldMark)}}}); err != nil {
		t.Fatal(err)
	}

	if err := s.Promote(ctx, entry(t, s, "1.1.0"), catalog.StageSpec{Name: "prod"}, catalog.Event{Time: at(3), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	if v, ok := a.imageTags(t, east, old)[key]; ok {
		t.Errorf("1.0.0 still holds staging (%q) after 1.1.0's next promotion", v)
	}
	tags := a.imageTags(t, east, cur)
	if tags[key] == "" || tags[catalogami.StageTag("prod")] == "" {
		t.Errorf("1.1.0's tags %v: want staging and prod", tags)
	}
}
