package adopt

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

// Request is what bakery adopt was asked: a Packer manifest (and which
// of its builds), AMIs named one by one, or both, to adopt as Version.
type Request struct {
	// Manifest is the path of a Packer manifest.json; empty for none.
	Manifest string
	// Build names the manifest's build to adopt; empty: every build of
	// the run (whose AMIs must then be in different regions).
	Build string
	// RunUUID names the manifest's run; empty: its last run.
	RunUUID string
	// AMIs are AMIs named one by one, REGION:AMI-ID.
	AMIs []string
	// Version is the recipe version the AMIs become.
	Version string
	// Actor is who adopts them.
	Actor string
	// Tags are the machine_image's own tags.
	Tags map[string]string
	// Stages is how many stages the recipe has (see
	// catalogami.Adoption.Stages).
	Stages int
}

// Plan reads the manifest of req (if any) and returns the adoption to
// make: every AMI of the selected builds and of req.AMIs, when the
// newest build finished, and where they came from. It calls no AWS API.
func Plan(req Request) (catalogami.Adoption, error) {
	a := catalogami.Adoption{Version: req.Version, Actor: req.Actor, Tags: req.Tags, Stages: req.Stages}
	if req.Manifest == "" && len(req.AMIs) == 0 {
		return a, fmt.Errorf("nothing to adopt: name a Packer manifest with --packer-manifest FILE, or AMIs with --ami REGION:AMI-ID")
	}
	if req.Manifest == "" && (req.Build != "" || req.RunUUID != "") {
		return a, fmt.Errorf("--build and --run-uuid choose builds of a Packer manifest: name it with --packer-manifest FILE")
	}
	var from []string
	if req.Manifest != "" {
		m, err := ReadManifest(req.Manifest)
		if err != nil {
			return a, err
		}
		builds, err := m.Select(req.Build, req.RunUUID)
		if err != nil {
			return a, err
		}
		seen := map[string]string{} // region → build
		var names, types []string
		for _, b := range builds {
			amis, err := b.AMIs()
			if err != nil {
				return a, fmt.Errorf("%s: %w", m.Path, err)
			}
			for _, r := range amis {
				if other, ok := seen[r.Region]; ok && other != b.Name {
					return a, fmt.Errorf("%s: builds %q and %q of run %s both made an AMI in %s: a version has one AMI per region; adopt one build with --build", m.Path, other, b.Name, b.PackerRunUUID, r.Region)
				}
				seen[r.Region] = b.Name
			}
			a.AMIs = append(a.AMIs, amis...)
			if t := b.Built(); t.After(a.Created) {
				a.Created = t
			}
			names = appendNew(names, b.Name)
			types = appendNew(types, b.BuilderType)
		}
		a.CreatedBy = "packer (" + strings.Join(types, ", ") + ")"
		from = append(from, fmt.Sprintf("packer build %s, run %s, of %s", strings.Join(names, ", "), builds[0].PackerRunUUID, filepath.Base(m.Path)))
	}
	if len(req.AMIs) > 0 {
		var named []string
		for _, s := range req.AMIs {
			r, err := catalogami.ParseRegionAMI(s)
			if err != nil {
				return a, fmt.Errorf("--ami: %w", err)
			}
			a.AMIs = append(a.AMIs, r)
			named = append(named, r.String())
		}
		from = append(from, "--ami "+strings.Join(named, " "))
	}
	a.Reason = strings.Join(from, "; ")
	return a, nil
}

func appendNew(ss []string, s string) []string {
	if s == "" || slices.Contains(ss, s) {
		return ss
	}
	return append(ss, s)
}

// Adopter adopts AMIs as a version: catalog/ami's LifecycleStore.
type Adopter interface {
	Adopt(ctx context.Context, a catalogami.Adoption) (*catalogami.Adopted, error)
}

// Run plans req (Plan) and adopts its AMIs into store. others are the
// stores of the recipe's other artifacts (its containers, its other
// machine_image blocks): a version is all of its artifacts, so when one
// of them has req.Version already, nothing is adopted. Nothing changes
// when the plan fails or the store's checks refuse it.
func Run(ctx context.Context, store Adopter, req Request, others ...catalog.Store) (*catalogami.Adopted, error) {
	what := "adopting AMIs as version " + req.Version
	a, err := Plan(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	for _, o := range others {
		es, err := o.Entries(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		for _, e := range es {
			if e.Version == req.Version {
				return nil, fmt.Errorf("%s: %s exists already (its %s %s, %s): a version is immutable; adopt these AMIs as another --version",
					what, e.Ref, e.Kind, e.Artifact, e.Reference)
			}
		}
	}
	return store.Adopt(ctx, a)
}
