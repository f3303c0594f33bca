package main

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

// TestSeededAMIsReadAsBakeryWroteThem: the seeded tags are bakery's own:
// catalog/ami's lifecycle store reads every version in the three regions,
// the stage holders (the newest version in dev, the newest tenth in
// staging, the newest hundredth in prod) and the promote/demote events.
func TestSeededAMIsReadAsBakeryWroteThem(t *testing.T) {
	srv := mototest.Start(t)
	var calls atomic.Int64
	var fig seedFigures
	const n = 12
	if _, err := seedAMIs(context.Background(), srv.URL, n, 4, &fig, &calls); err != nil {
		t.Fatal(err)
	}
	store := catalogami.NewLifecycleStore(awsConfig(srv.URL, scaleHome), scaleRecipe, scaleArtifact, scaleRegions)
	entries, err := store.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("read %d versions, want %d", len(entries), n)
	}
	holders := map[string]string{}
	events := map[string]int{}
	for _, e := range entries {
		if len(e.Locations) != len(scaleRegions) {
			t.Errorf("%s is in %d regions, want %d", e.Version, len(e.Locations), len(scaleRegions))
		}
		for stage := range e.Stages {
			holders[stage] += e.Version
		}
		for _, ev := range e.Events {
			events[ev.Action]++
		}
	}
	want := map[string]string{"dev": "1.0.11", "staging": "1.0.10", "prod": "1.0.0"}
	for stage, v := range want {
		if holders[stage] != v {
			t.Errorf("%s held by %q, want %s", stage, holders[stage], v)
		}
	}
	// Promotions: 12 into dev, 2 into staging, 1 into prod; every one
	// but the holders' was undone by a demotion.
	if events[catalog.ActionPromote] != 15 || events[catalog.ActionDemote] != 12 {
		t.Errorf("events = %v, want 15 promote and 12 demote", events)
	}
}

// TestPaginateTagsLetsAClientReadEveryPage: behind paginateTags,
// go-containerregistry's List (pages of 1000) reads past the first page
// of pkg/registry's tag list, and stops after a full last page (where
// pkg/registry would answer the whole list again).
func TestPaginateTagsLetsAClientReadEveryPage(t *testing.T) {
	for _, n := range []int{1000, 1003} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c := &requestCounter{n: map[string]int{}}
			srv := httptest.NewServer(c.wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
			defer srv.Close()
			repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/a/b")
			if err != nil {
				t.Fatal(err)
			}
			img, err := random.Image(16, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(repo.Tag(versionName(0)), img); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < n; i++ {
				if err := remote.Tag(repo.Tag(versionName(i)), img); err != nil {
					t.Fatal(err)
				}
			}
			c.take()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			tags, err := remote.List(repo, remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if len(tags) != n {
				t.Errorf("listed %d tags, want %d", len(tags), n)
			}
			if got := c.take()["GET tags/list"]; got != 2 {
				t.Errorf("listing took %d pages, want 2", got)
			}
		})
	}
}
