package oci

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/sbom"
	"github.com/bakery-sh/bakery/internal/steps"
	"github.com/bakery-sh/bakery/recipes"
)

// buildState is what the build steps share.
type buildState struct {
	plan   *Plan
	layout *catalogoci.Layout
	stage  string // staging folder for layer files
	// builds are the distinct layers to build: one per recipe layer,
	// or one per group of platforms whose bases differ in the folders
	// the layer writes.
	builds []*layerBuild
	// platformLayers lists, for each platform of the base (in
	// plan.base.images order), its layers in recipe order.
	platformLayers [][]*layerBuild
	// out is the assembled image or index.
	out partial.Describable
	// tx records the blobs written to the local layout, for rollback.
	tx *catalogoci.Tx
	// image is the result.
	image *catalog.Image
	// cache remembers file digests for the SBOM (see sbom.Cache).
	cache *sbom.Cache
	// pkgdbs holds, per platform of the base, the package databases
	// found in it, by path (see sbom.Packages).
	pkgdbs []map[string][]byte
	// docs are the SBOM and provenance attached to the image.
	docs []catalogoci.Attestation
}

// Build bakes the image of p and writes it to its target. On any error or
// cancellation nothing is left behind: staged layers are removed and a
// local layout is left exactly as it was.
func (b *Baker) Build(ctx context.Context, p *Plan) (*catalog.Image, error) {
	l, err := catalogoci.OpenLayout(b.home)
	if err != nil {
		return nil, err
	}
	st := &buildState{plan: p, layout: l, cache: sbom.OpenCache(filepath.Join(l.Dir(), sbomCacheFile))}
	if p.Key == "" && !p.container.NoSBOM && !st.cache.Empty() {
		// The SBOM's digest cache is keyed by the files' content hashes:
		// with entries to look up, hashing first (BLAKE3, fast) can spare
		// computing SHA-1 and SHA-256 of unchanged files. With none, the
		// layers compute the key as they read the files, once.
		if err := b.Key(ctx, p); err != nil {
			return nil, err
		}
	}
	list := []steps.Step[buildState]{stageStep{}, lowerStep{b}, layersStep{b}, assembleStep{b}, attestStep{b}}
	if p.Location != "" {
		list = append(list, writeLayoutStep{b})
	} else {
		list = append(list, pushStep{b})
	}
	if err := steps.Run(ctx, steps.Runner{Progress: progress.WithPrefix(progress.For(ctx, b.progress), p.container.Name+": ")}, st, list...); err != nil {
		return nil, fmt.Errorf("baking container %s: %w", p.container.Name, err)
	}
	if err := st.cache.Save(); err != nil {
		progress.For(ctx, b.progress).Info(fmt.Sprintf("warning: %s: %v", p.Target, err))
	}
	b.recordBake(ctx, p, l)
	return st.image, nil
}

// recordBake adds the bake, with its real time and actor, to the image's
// history. The image is complete without it, so a failure is reported but
// does not fail the bake (history then shows the image's created time).
func (b *Baker) recordBake(ctx context.Context, p *Plan, l *catalogoci.Layout) {
	ev := catalog.Event{Time: b.now().UTC(), Action: catalog.ActionBake, Recipe: p.recipe.Name, Version: p.recipe.Version,
		Artifact: p.container.Name, Kind: catalog.KindContainer, Actor: b.actor}
	var err error
	if p.Location != "" {
		err = l.Store(p.container.Name, p.recipe.Name, p.container.Name).RecordBake(ctx, p.recipe.Version, ev)
	} else {
		var rs *catalogoci.RegistryStore
		rs, err = catalogoci.NewRegistryStore(p.container.Repository, p.recipe.Name, p.container.Name,
			catalogoci.WithKeychain(b.keychain), catalogoci.WithTransport(b.transport))
		if err == nil {
			err = rs.RecordBake(ctx, p.recipe.Version, ev)
		}
	}
	if err != nil {
		progress.For(ctx, b.progress).Info(fmt.Sprintf("warning: %s: %v", p.Target, err))
	}
}

// stageStep makes the staging folder inside the layout (same filesystem,
// so layers are renamed into place, never copied).
type stageStep struct{}

func (stageStep) Name() string { return "prepare staging folder" }

func (stageStep) Run(_ context.Context, st *buildState, _ progress.Step) error {
	dir, err := st.layout.TempDir()
	if err != nil {
		return err
	}
	st.stage = dir
	return nil
}

func (stageStep) Cleanup(_ context.Context, st *buildState, _ bool) error {
	if st.stage == "" {
		return nil
	}
	return os.RemoveAll(st.stage)
}

// layerBuild is one layer to build: a recipe layer, with the folders
// it writes that already exist below it.
type layerBuild struct {
	index     int      // in the recipe's layers
	platforms []string // the platforms it is for
	kept      keptDirs
	built     *Built
	// files records the layer's files for the SBOM; sources maps the
	// in-image name of each regular file read from disk to its path.
	files   *sbom.Recorder
	sources map[string]string
}

// lowerStep reads the folders of each platform's base (and of the
// recipe's earlier layers) that the layers write again, so that they
// keep their mode, owner and times, and groups platforms whose bases
// agree on them so that each layer is built once per group.
type lowerStep struct{ b *Baker }

func (lowerStep) Name() string { return "read the base's folders" }

func (s lowerStep) Run(ctx context.Context, st *buildState, _ progress.Step) error {
	c := st.plan.container
	images := st.plan.base.images
	cache := map[v1.Hash][]lowerOp{}
	fss := make([]*lowerFS, len(images))
	for i, pi := range images {
		fs, err := readLowerFS(ctx, pi.img, s.b.jobs, cache)
		if err != nil {
			return fmt.Errorf("reading base %s (%s): %w", st.plan.base.name, pi.platform.String(), err)
		}
		fss[i] = fs
	}
	st.pkgdbs = make([]map[string][]byte, len(fss))
	for i, fs := range fss {
		st.pkgdbs[i] = fs.pkgdb
	}
	st.builds, st.platformLayers = nil, make([][]*layerBuild, len(images))
	for li, l := range c.Layers {
		// The last layer over nothing (one layer on scratch) keeps
		// nothing: its entries need not be listed (a tarball read twice).
		bare := li == len(c.Layers)-1 && !slices.ContainsFunc(fss, func(fs *lowerFS) bool { return !fs.empty() })
		var es []layerEntry
		if !bare {
			var err error
			if es, err = plannedEntries(ctx, l); err != nil {
				return fmt.Errorf("layer %d (%s): %w", li+1, l.Source, err)
			}
		}
		var group []*layerBuild
		for i, pi := range images {
			kept, err := planKept(l, es, fss[i], s.b.epoch)
			if err != nil {
				return fmt.Errorf("layer %d (%s) on base %s (%s): %w", li+1, l.Source, st.plan.base.name, pi.platform.String(), err)
			}
			j := slices.IndexFunc(group, func(b *layerBuild) bool { return b.kept.equal(kept) })
			if j < 0 {
				j = len(group)
				group = append(group, &layerBuild{index: li, kept: kept})
			}
			group[j].platforms = append(group[j].platforms, pi.platform.String())
			st.platformLayers[i] = append(st.platformLayers[i], group[j])
		}
		st.builds = append(st.builds, group...)
	}
	return nil
}

func (lowerStep) Cleanup(context.Context, *buildState, bool) error { return nil }

// layersStep builds every layer concurrently.
type layersStep struct{ b *Baker }

func (s layersStep) Name() string {
	return "build layers"
}

func (s layersStep) Run(ctx context.Context, st *buildState, _ progress.Step) error {
	c := st.plan.container
	opts := []LayerOption{WithCompression(c.Compression)}
	var archives []inputPlan // the tarball layers, when the key is not known yet
	if st.plan.Key == "" {
		// The key is computed from what the layers read (see keyFromLayers);
		// only archives, which BuildLayer reads through a decompressor and
		// may not read to the end, are hashed on their own.
		opts = append(opts, withInputSums())
		var err error
		if archives, err = hashArchives(ctx, c.Layers); err != nil {
			return err
		}
		// The SBOM's digest cache can look up the entries of archives.
		st.plan.sums = sumsOf(archives)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.b.jobs)
	shared := len(st.builds) == len(c.Layers)
	for _, lb := range st.builds {
		i, l := lb.index, c.Layers[lb.index]
		g.Go(func() error {
			name := fmt.Sprintf("%s: layer %d/%d %s → %s", c.Name, i+1, len(c.Layers), l.Source, l.Destination)
			if !shared {
				name += " (" + strings.Join(lb.platforms, ", ") + ")"
			}
			ps := progress.For(ctx, s.b.progress).Step(name)
			// Clipped: the layers build concurrently, each appending its own options.
			lopts := append(slices.Clip(opts), withKept(lb.kept))
			if !c.NoSBOM {
				lb.files = st.recorder(lb)
				lopts = append(lopts, WithEntryObserver(lb.observer(lb.files)))
			}
			built, err := BuildLayer(gctx, l, st.stage, s.b.epoch, ps, lopts...)
			ps.Done(err)
			if err != nil {
				if lb.files != nil {
					lb.files.Files() // stops its hashing
				}
				return fmt.Errorf("layer %d (%s): %w", i+1, l.Source, catalogoci.ExplainDiskError(st.layout.Dir(), err))
			}
			lb.built = built
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if st.plan.Key == "" {
		return keyFromLayers(st, archives)
	}
	return nil
}

// hashArchives hashes the archive of every tarball layer for the bake
// key; the result has one plan per layer, empty for other layers.
func hashArchives(ctx context.Context, layers []*recipes.Layer) ([]inputPlan, error) {
	return hashPlans(ctx, layers, runtime.GOMAXPROCS(0), func(l *recipes.Layer) bool { return l.Kind == recipes.SourceTarball })
}

// keyFromLayers completes the plan's bake key from what the layers read
// as they were built (and the archives, hashed before), which is the key
// Baker.Key would have computed from the same inputs. A layer built more
// than once (for bases that differ) must have read the same inputs each
// time.
func keyFromLayers(st *buildState, archives []inputPlan) error {
	p := st.plan
	plans := archives
	seen := make([]bool, len(plans))
	for _, lb := range st.builds {
		in := lb.built.inputs
		if in == nil {
			continue // a tarball layer
		}
		if !seen[lb.index] {
			plans[lb.index], seen[lb.index] = *in, true
			continue
		}
		if !slices.Equal(plans[lb.index].jobs, in.jobs) {
			l := p.container.Layers[lb.index]
			return fmt.Errorf("layer %d (%s): its files changed while bakery read them; bake again once nothing writes to the layer sources", lb.index+1, l.Source)
		}
	}
	addInputs(p.keyer, plans)
	p.Key, p.keyer, p.sums = p.keyer.Sum(), nil, sumsOf(plans)
	// The SBOM's digest cache could not be asked while the keys of its
	// entries were unknown: remember this bake's digests for the next.
	for _, lb := range st.builds {
		st.rememberDigests(lb)
	}
	return nil
}

func (layersStep) Cleanup(context.Context, *buildState, bool) error { return nil }

// assembleStep puts the layers on the base and sets config and annotations.
type assembleStep struct{ b *Baker }

func (assembleStep) Name() string { return "assemble image" }

func (s assembleStep) Run(_ context.Context, st *buildState, _ progress.Step) error {
	p := st.plan
	ann := s.b.annotations(p)
	var imgs []v1.Image
	for i, pi := range p.base.images {
		layers := make([]*Built, len(st.platformLayers[i]))
		for j, lb := range st.platformLayers[i] {
			layers[j] = lb.built
		}
		img, err := s.b.image(p, pi, layers, ann)
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	if !p.base.multi {
		st.out = imgs[0]
		return nil
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, img := range imgs {
		plat := p.base.images[i].platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &plat},
		})
	}
	st.out = mutate.Annotations(idx, ann).(v1.ImageIndex)
	return nil
}

func (assembleStep) Cleanup(context.Context, *buildState, bool) error { return nil }

// annotations are the OCI and bakery annotations of the manifest (and index).
func (b *Baker) annotations(p *Plan) map[string]string {
	ann := map[string]string{
		catalog.AnnotationVersion:  p.recipe.Version,
		catalog.AnnotationCreated:  b.epoch.Format(time.RFC3339),
		catalog.AnnotationRecipe:   p.recipe.Name,
		catalog.AnnotationArtifact: p.container.Name,
		catalog.AnnotationBakeKey:  p.Key,
	}
	if p.base.digest != "" {
		ann[catalog.AnnotationBaseName] = p.base.name
		ann[catalog.AnnotationBaseDigest] = p.base.digest
	}
	if l := p.container.BaseLink; l != nil && l.Resolved != nil {
		ann[catalog.AnnotationBaseRecipe] = l.Recipe + "@" + l.Resolved.Version
	}
	return ann
}

// image builds one platform's image: base + layers, config, annotations.
func (b *Baker) image(p *Plan, pi platformImage, layers []*Built, ann map[string]string) (v1.Image, error) {
	c := p.container
	if pi.platform.OS == "" || pi.platform.Architecture == "" {
		return nil, fmt.Errorf("base %s names no os and architecture for one of its images (%q); name the platforms in the recipe, like platforms = [\"linux/amd64\"]", p.base.name, pi.platform.String())
	}
	img, err := ociImage(pi.img)
	if err != nil {
		return nil, fmt.Errorf("reading base %s: %w", p.base.name, err)
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{
			Layer:     l.Layer(),
			MediaType: l.MediaType,
			History: v1.History{
				Created:   v1.Time{Time: b.epoch},
				CreatedBy: fmt.Sprintf("bakery: layer %s → %s", c.Layers[i].Source, c.Layers[i].Destination),
				Comment:   "recipe " + p.recipe.Name + " " + p.recipe.Version,
			},
		}
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("adding layers: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading image config: %w", err)
	}
	cfg = cfg.DeepCopy()
	applyConfig(&cfg.Config, c.Env, c.Entrypoint, c.Cmd, c.Workdir, c.User, c.Labels, c.ExposedPorts)
	cfg.Created = v1.Time{Time: b.epoch}
	cfg.OS, cfg.Architecture, cfg.Variant = pi.platform.OS, pi.platform.Architecture, pi.platform.Variant
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, fmt.Errorf("writing image config: %w", err)
	}
	return mutate.Annotations(img, ann).(v1.Image), nil
}

// applyConfig sets the recipe's runtime settings over the base's, as a
// Dockerfile would: env and labels merge, an entrypoint without cmd
// clears the base cmd.
func applyConfig(cfg *v1.Config, env map[string]string, entrypoint, cmd []string, workdir, user string, labels map[string]string, ports []string) {
	if len(env) > 0 {
		merged := make([]string, 0, len(cfg.Env)+len(env))
		for _, kv := range cfg.Env {
			k, _, _ := strings.Cut(kv, "=")
			if _, override := env[k]; !override {
				merged = append(merged, kv)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(env)) {
			merged = append(merged, k+"="+env[k])
		}
		cfg.Env = merged
	}
	if entrypoint != nil {
		cfg.Entrypoint = entrypoint
		if cmd == nil {
			cfg.Cmd = nil
		}
	}
	if cmd != nil {
		cfg.Cmd = cmd
	}
	if workdir != "" {
		cfg.WorkingDir = workdir
	}
	if user != "" {
		cfg.User = user
	}
	if len(labels) > 0 {
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		maps.Copy(cfg.Labels, labels)
	}
	if len(ports) > 0 {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
}

// writeLayoutStep writes the image into the local layout in one
// transaction: blobs first, then a single atomic index.json update.
type writeLayoutStep struct{ b *Baker }

func (writeLayoutStep) Name() string { return "write to OCI layout" }

func (s writeLayoutStep) Run(ctx context.Context, st *buildState, _ progress.Step) error {
	p := st.plan
	st.tx = st.layout.Begin()
	for _, lb := range st.builds {
		if _, err := st.tx.AdoptBuiltBlob(lb.built.Digest, lb.built.Size, lb.built.Path); err != nil {
			return err
		}
	}
	var err error
	switch out := st.out.(type) {
	case v1.ImageIndex:
		_, err = st.tx.WriteIndex(ctx, out)
	case v1.Image:
		_, err = st.tx.WriteImage(ctx, out)
	}
	if err != nil {
		return err
	}
	desc, err := partial.Descriptor(st.out)
	if err != nil {
		return fmt.Errorf("describing image: %w", err)
	}
	if err := st.tx.AttachAttestations(*desc, st.docs...); err != nil {
		return err
	}
	tag := st.tx.Tag
	if p.recipe.VersionAuto {
		// An assigned version names one image: another process that
		// assigned it first wins, under the layout lock.
		tag = st.tx.TagNew
	}
	if err := tag(p.Target, *desc); err != nil {
		return err
	}
	if err := st.tx.Commit(ctx); err != nil {
		return err
	}
	img, err := st.layout.Lookup(ctx, p.Target)
	if err != nil {
		return err
	}
	st.image = img
	return nil
}

func (writeLayoutStep) Cleanup(_ context.Context, st *buildState, failed bool) error {
	if failed && st.tx != nil {
		return st.tx.Rollback()
	}
	return nil
}

// pushStep uploads the image to its registry. go-containerregistry HEADs
// every blob first and uploads only those the registry lacks (and mounts
// base layers from another repository of the same registry).
type pushStep struct{ b *Baker }

func (pushStep) Name() string { return "push to registry" }

func (s pushStep) Run(ctx context.Context, st *buildState, ps progress.Step) error {
	p := st.plan
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last int64
		for u := range updates {
			if last == 0 {
				ps.SetTotal(u.Total)
			}
			ps.Add(u.Complete - last)
			last = u.Complete
		}
	}()
	opts := append(s.b.remoteOptions(ctx), remote.WithProgress(updates))
	desc, err := partial.Descriptor(st.out)
	if err != nil {
		close(updates)
		<-done
		return fmt.Errorf("describing image: %w", err)
	}
	// By digest first, then the SBOM and provenance, then the tag: a
	// tagged image always has them.
	byDigest := p.tag.Context().Digest(desc.Digest.String())
	switch out := st.out.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(byDigest, out, opts...)
	case v1.Image:
		err = remote.Write(byDigest, out, opts...)
	}
	<-done
	if err == nil {
		err = catalogoci.WriteAttestations(ctx, p.tag.Context(), *desc, s.b.remoteOptions(ctx), st.docs...)
	}
	if err == nil {
		err = remote.Tag(p.tag, st.out.(remote.Taggable), s.b.remoteOptions(ctx)...)
	}
	if err != nil {
		return fmt.Errorf("pushing %s: %w", p.Target, catalogoci.ExplainRegistryError(p.tag.Context(), err))
	}
	img, err := catalogoci.NewRegistry(catalogoci.WithKeychain(s.b.keychain), catalogoci.WithTransport(s.b.transport)).Lookup(ctx, p.Target)
	if err != nil {
		return err
	}
	if img == nil {
		return fmt.Errorf("pushing %s: the registry does not show the tag after the push; try again", p.Target)
	}
	st.image = img
	return nil
}

func (pushStep) Cleanup(context.Context, *buildState, bool) error { return nil }
