package adopt_test

import (
	"context"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/adopt"
	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

// recorder is an Adopter that records what it is asked; the real one
// (catalog/ami) is tested against moto.
type recorder struct{ got []catalogami.Adoption }

func (r *recorder) Adopt(_ context.Context, a catalogami.Adoption) (*catalogami.Adopted, error) {
	r.got = append(r.got, a)
	return &catalogami.Adopted{Ref: catalog.Ref{Recipe: "web", Version: a.Version}, AMIs: a.AMIs, Changed: true}, nil
}

// versions is a catalog.Store of a container artifact holding versions.
type versions []string

func (v versions) Entries(context.Context) ([]catalog.Entry, error) {
	var es []catalog.Entry
	for _, ver := range v {
		e := catalog.Entry{}
		e.Ref = catalog.Ref{Recipe: "web", Version: ver}
		e.Kind, e.Artifact, e.Reference = catalog.KindContainer, "app", "registry.example/web:"+ver
		es = append(es, e)
	}
	return es, nil
}
func (versions) Promote(context.Context, catalog.Entry, catalog.StageSpec, catalog.Event) error {
	return nil
}
func (versions) Revoke(context.Context, catalog.Entry, catalog.Event) error   { return nil }
func (versions) Unrevoke(context.Context, catalog.Entry, catalog.Event) error { return nil }
func (versions) Record(context.Context, catalog.Entry, catalog.Event) error   { return nil }

func TestRunRefusesAVersionAnotherArtifactHas(t *testing.T) {
	rec := &recorder{}
	req := adopt.Request{Manifest: manifest, Version: "1.0.0"}
	_, err := adopt.Run(context.Background(), rec, req, versions{"0.9.0", "1.0.0"})
	if err == nil || !strings.Contains(err.Error(), "web@1.0.0 exists already (its container app, registry.example/web:1.0.0)") {
		t.Errorf("Run = %v, want the container's version named", err)
	}
	if len(rec.got) != 0 {
		t.Errorf("the store was asked to adopt %+v", rec.got)
	}
	res, err := adopt.Run(context.Background(), rec, adopt.Request{Manifest: manifest, Version: "1.1.0"}, versions{"0.9.0", "1.0.0"})
	if err != nil || len(rec.got) != 1 || len(res.AMIs) != 2 {
		t.Errorf("Run of a new version = %+v, %v; asked %+v", res, err, rec.got)
	}
}
