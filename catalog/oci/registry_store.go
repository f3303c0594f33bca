package oci

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// maxRounds bounds how many times Promote reads the repository while
// concurrent promotions keep changing the stage.
const maxRounds = 12

// eventWrites bounds how many times an event is written until the
// registry lists it (a registry without the referrers API keeps an
// image's referrers in one fallback tag that concurrent writers may
// overwrite).
const eventWrites = 3

// RegistryStore is the lifecycle store ([catalog.Store]) of one container
// artifact (a container block of a recipe) whose images are in a registry
// repository. Everything it knows is in the registry (principle 1), so any
// number of RegistryStore values, in any number of processes, see and
// change the same state:
//
//   - a version is a tag REPO:VERSION of a manifest (or index) carrying the
//     artifact's bakery annotations with that version;
//   - a version is in a stage when the tag named after the stage points at
//     its digest: REPO:STAGE, or STAGE_REPO:STAGE when the stage has its own
//     repository (the image is copied there by digest first);
//   - its history is OCI 1.1 referrer artifacts whose subject is the image
//     (see [EventArtifactType]), read with one referrers call per version.
//
// It keeps no state between calls and is safe for concurrent use.
type RegistryStore struct {
	reg              *Registry
	repo             name.Repository
	recipe, artifact string
}

// Compile-time check that RegistryStore is a catalog.Store.
var _ catalog.Store = (*RegistryStore)(nil)

// NewRegistryStore returns the store of recipe's container artifact whose
// versions are tagged in repo ("HOST/PATH", e.g. ghcr.io/acme/web).
// opts are the [Registry] options: credentials ([WithKeychain]), transport
// ([WithTransport]), user agent and [WithConcurrency].
func NewRegistryStore(repo, recipe, artifact string, opts ...Option) (*RegistryStore, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("opening the catalog of %s in %q: %w: write the repository as HOST/PATH (e.g. ghcr.io/acme/web)", artifact, repo, err)
	}
	if recipe == "" || artifact == "" {
		return nil, fmt.Errorf("opening the catalog in %s: the recipe name and the artifact name are both required", r)
	}
	return &RegistryStore{reg: NewRegistry(opts...), repo: r, recipe: recipe, artifact: artifact}, nil
}

// Repository returns the repository the store reads, as HOST/PATH.
func (s *RegistryStore) Repository() string { return s.repo.Name() }

// Entries returns every version of the artifact in the repository, oldest
// first, with its stages, revocation, locations and history. It lists the
// tags (following pagination), GETs each tag's manifest and lists each
// version's referrers, at most [DefaultConcurrency] requests at once; it
// reads no blob. A stage with its own repository costs one HEAD of its tag,
// and each stage repository a version was promoted into one HEAD of the
// version's digest there (its Locations).
func (s *RegistryStore) Entries(ctx context.Context) ([]catalog.Entry, error) {
	ss, err := s.session(ctx)
	if err != nil {
		return nil, err
	}
	st, err := ss.read()
	if err != nil {
		return nil, err
	}
	holders, locations, err := ss.placements(st)
	if err != nil {
		return nil, err
	}
	entries := make([]catalog.Entry, len(st.versions))
	for i, v := range st.versions {
		entries[i] = v.entry(holders, locations[v])
	}
	return entries, nil
}

// Promote puts version e into spec's stage, recording ev (its Time must be
// set; Action and Stage are filled in when empty):
//
//  1. with spec.Repository set, it copies the image there by digest (blobs
//     are mounted from the repository within one registry and streamed only
//     when missing across registries; nothing is rebuilt, the digest stays)
//     and tags it STAGE_REPO:VERSION, refusing, before any change, when
//     that version tag holds another image (see publish);
//  2. it records ev on the image, unless an identical event (action, stage,
//     time) is there or the image already holds a live promotion into the
//     stage with the same repository;
//  3. it points the stage tag at the winner: of the promotions into the
//     stage not since undone by a demotion or revocation, the newest (equal
//     times: the greater digest), from a fresh read of every version;
//  4. it reads everything again and repeats 3 until two reads in a row
//     find the tag on the winner (at most 12 reads), so that concurrent
//     promotions into one stage end with exactly one holder, the newest;
//     a tag of the stage left in another repository by an earlier
//     configuration is then emptied (see [EmptyStageArtifactType]);
//  5. it records a demote event ("replaced by VERSION", at the winner's
//     promotion time) on every other version that lost the stage, re-reading
//     each one's history first; processes racing to demote the same
//     version to the same winner write the same event.
//
// Running it again, after a crash or not, finishes the job and writes
// nothing that is already there. When another version's newer promotion
// holds the stage, the promotion is recorded (and demoted) and Promote
// returns an error wrapping [ErrSuperseded]. A revoked image is refused.
func (s *RegistryStore) Promote(ctx context.Context, e catalog.Entry, spec catalog.StageSpec, ev catalog.Event) error {
	fail := func(err error) error {
		return fmt.Errorf("promoting %s@%s (%s in %s) to %s: %w", s.recipe, e.Version, s.artifact, s.repo, spec.Name, err)
	}
	pe, err := checkEvent(ev, catalog.ActionPromote, spec.Name)
	if err != nil {
		return fail(err)
	}
	dst := s.repo
	if spec.Repository != "" {
		if dst, err = name.NewRepository(spec.Repository); err != nil {
			return fail(fmt.Errorf("stage repository %q: %w: write it as HOST/PATH", spec.Repository, err))
		}
		if dst.Name() != s.repo.Name() {
			pe.Repository = dst.Name()
		}
	}
	ss, err := s.session(ctx)
	if err != nil {
		return fail(err)
	}
	st, err := ss.read()
	if err != nil {
		return fail(err)
	}
	v, err := st.find(e, s.repo.Name())
	if err != nil {
		return fail(err)
	}
	if pe.Repository == "" && slices.ContainsFunc(st.versions, func(x *version) bool { return x.image.Version == spec.Name }) {
		return fail(fmt.Errorf("the stage's tag %s:%s is a version tag: rename the stage", s.repo, spec.Name))
	}
	if revoked, reason := v.revoked(); revoked {
		return fail(fmt.Errorf("the image is revoked (%s): unrevoke it first", cmp.Or(reason, "no reason given")))
	}
	if pe.Repository != "" {
		if err := ss.copyTo(v, dst); err != nil {
			return fail(err)
		}
	}
	if l := v.live(pe.Stage); (l == nil || l.Repository != pe.Repository) && !v.has(pe.key()) {
		if err := ss.writeEvent(v, pe); err != nil {
			return fail(err)
		}
	}
	st, w, we, err := ss.converge(pe.Stage)
	if err != nil {
		return fail(err)
	}
	for _, d := range st.demotions(pe.Stage, w, we) {
		// Another process may have demoted it since the read.
		if d.v.events, err = ss.events(ss.ctx, d.v); err != nil {
			return fail(err)
		}
		if d.v.live(pe.Stage) == nil {
			continue
		}
		if err := ss.writeEvent(d.v, d.e); err != nil {
			return fail(fmt.Errorf("recording that %s left the stage: %w", d.v.ref(), err))
		}
	}
	if w.desc.Digest != v.desc.Digest {
		return fail(supersededError(v, w, we))
	}
	return nil
}

// Revoke records ev (a revoke; its Time must be set) on version e, unless
// the image is already revoked, and empties every stage tag that points at
// the image, in its repository and in the stage repositories it was
// promoted into (each tag is re-read right before): the tag is pointed at
// an empty stage artifact naming the revocation (see
// [EmptyStageArtifactType]), which works on registries that delete no tag.
// Running it again finishes the job.
func (s *RegistryStore) Revoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	fail := func(err error) error {
		return fmt.Errorf("revoking %s@%s (%s in %s): %w", s.recipe, e.Version, s.artifact, s.repo, err)
	}
	re, err := checkEvent(ev, catalog.ActionRevoke, "")
	if err != nil {
		return fail(err)
	}
	ss, st, v, err := s.open(ctx, e)
	if err != nil {
		return fail(err)
	}
	if revoked, _ := v.revoked(); !revoked && !v.has(re.key()) {
		if err := ss.writeEvent(v, re); err != nil {
			return fail(err)
		}
	}
	stages := st.stageRepos()
	tags := map[string]name.Tag{}
	for stage, h := range st.others {
		if _, known := stages[stage]; known && h == v.desc.Digest {
			t := s.repo.Tag(stage)
			tags[t.String()] = t
		}
	}
	for _, p := range v.events {
		if p.Action != catalog.ActionPromote {
			continue
		}
		repo := s.repo
		if p.Repository != "" {
			if repo, err = name.NewRepository(p.Repository); err != nil {
				continue // not a repository bakery wrote
			}
		}
		t := repo.Tag(p.Stage)
		tags[t.String()] = t
	}
	why := revokedWhy(v, re)
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if err := ss.emptyIf(tags[k], v.desc.Digest, why); err != nil {
			return fail(err)
		}
	}
	return nil
}

// Unrevoke records ev (an unrevoke; its Time must be set) on version e if
// the image is revoked. The image enters no stage.
func (s *RegistryStore) Unrevoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	fail := func(err error) error {
		return fmt.Errorf("unrevoking %s@%s (%s in %s): %w", s.recipe, e.Version, s.artifact, s.repo, err)
	}
	ue, err := checkEvent(ev, catalog.ActionUnrevoke, "")
	if err != nil {
		return fail(err)
	}
	ss, _, v, err := s.open(ctx, e)
	if err != nil {
		return fail(err)
	}
	if revoked, _ := v.revoked(); revoked && !v.has(ue.key()) {
		if err := ss.writeEvent(v, ue); err != nil {
			return fail(err)
		}
	}
	return nil
}

// open starts a session, reads the repository and finds e's version in it.
func (s *RegistryStore) open(ctx context.Context, e catalog.Entry) (*regSession, *regState, *version, error) {
	ss, err := s.session(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := ss.read()
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := st.find(e, s.repo.Name())
	if err != nil {
		return nil, nil, nil, err
	}
	return ss, st, v, nil
}

// regSession is one store call: remote options sharing one puller and one
// pusher (one ping and token per repository), and the version tags read so
// far (a version tag names one immutable manifest).
type regSession struct {
	s        *RegistryStore
	ctx      context.Context
	opts     []remote.Option
	versions map[string]*version
}

func (s *RegistryStore) session(ctx context.Context) (*regSession, error) {
	opts, err := s.reg.sessionOptions(ctx)
	if err != nil {
		return nil, err
	}
	return &regSession{s: s, ctx: ctx, opts: opts, versions: map[string]*version{}}, nil
}

// sessionOptions returns the remote options of one store call: one puller
// and one pusher shared by its requests (one ping and token per
// repository).
func (r *Registry) sessionOptions(ctx context.Context) ([]remote.Option, error) {
	base := r.remoteOptions(ctx)
	puller, err := remote.NewPuller(base...)
	if err != nil {
		return nil, fmt.Errorf("setting up registry client: %w", err)
	}
	pusher, err := remote.NewPusher(base...)
	if err != nil {
		return nil, fmt.Errorf("setting up registry client: %w", err)
	}
	return append(base, remote.Reuse(puller), remote.Reuse(pusher)), nil
}

// with returns the session's options with ctx.
func (ss *regSession) with(ctx context.Context) []remote.Option {
	return append(slices.Clip(ss.opts), remote.WithContext(ctx))
}

func (ss *regSession) explain(repo name.Repository, err error) error {
	return explain(ss.ctx, repo, err)
}

// regState is the repository as read: the versions with their events, and
// the artifact's other tags (stage tags, say) with their digests.
type regState struct {
	lifecycle
	others map[string]v1.Hash
}

// read lists the repository's tags, reads each tag's manifest (version
// tags read before in this session are not read again) and each version's
// events.
func (ss *regSession) read() (*regState, error) {
	repo := ss.s.repo
	tags, err := remote.List(repo, ss.opts...)
	st := &regState{others: map[string]v1.Hash{}}
	if err != nil {
		if ss.ctx.Err() == nil && repoAbsent(err) {
			return st, nil
		}
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, ss.explain(repo, err))
	}
	type result struct {
		v     *version
		other v1.Hash
	}
	results := make([]result, len(tags))
	g, gctx := errgroup.WithContext(ss.ctx)
	g.SetLimit(ss.s.reg.jobs)
	for i, tag := range tags {
		if strings.HasPrefix(tag, "sha256-") || strings.HasPrefix(tag, RetiredTagPrefix) {
			continue // referrers fallback tags, signatures; retire tombstones (read by RetireEvents)
		}
		if v, ok := ss.versions[tag]; ok {
			results[i].v = v
			continue
		}
		g.Go(func() (err error) {
			results[i].v, results[i].other, err = ss.readTag(gctx, tag)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, r := range results {
		switch {
		case r.v != nil:
			ss.versions[tags[i]] = r.v
			st.versions = append(st.versions, r.v)
		case r.other != (v1.Hash{}):
			st.others[tags[i]] = r.other
		}
	}
	g, gctx = errgroup.WithContext(ss.ctx)
	g.SetLimit(ss.s.reg.jobs)
	for _, v := range st.versions {
		g.Go(func() (err error) {
			v.events, err = ss.events(gctx, v)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sortVersions(st.versions)
	return st, nil
}

// readTag GETs tag's manifest. It returns the version when the tag is a
// version tag of the artifact, the digest when it is another tag of one of
// the artifact's manifests, and neither for anything else.
func (ss *regSession) readTag(ctx context.Context, tag string) (*version, v1.Hash, error) {
	repo := ss.s.repo
	ref := repo.Tag(tag)
	opts := ss.with(ctx)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		if ctx.Err() == nil && isAbsent(err) {
			return nil, v1.Hash{}, nil // deleted since the listing
		}
		return nil, v1.Hash{}, fmt.Errorf("reading %s: %w", ref, ss.explain(repo, err))
	}
	a, ours := isBakeryManifest(desc.Manifest, ss.s.recipe, ss.s.artifact)
	if !ours {
		return nil, v1.Hash{}, nil
	}
	if a[catalog.AnnotationVersion] != tag {
		return nil, desc.Digest, nil
	}
	blobs := map[v1.Hash]v1.Descriptor{}
	fetch := func(ctx context.Context, d v1.Descriptor) ([]byte, error) {
		child, err := remote.Get(repo.Digest(d.Digest.String()), ss.with(ctx)...)
		if err != nil {
			return nil, ss.explain(repo, err)
		}
		return child.Manifest, nil
	}
	if err := collect(ctx, desc.Descriptor, desc.Manifest, fetch, blobs); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading %s: %w", ref, err)
	}
	img, err := imageFromManifest(ref.String(), desc.Digest, desc.Manifest, totalSize(blobs))
	if err != nil {
		return nil, v1.Hash{}, err
	}
	return &version{
		image: *img,
		desc:  v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size},
		raw:   desc.Manifest,
	}, v1.Hash{}, nil
}

// events lists v's referrers and returns its bakery events, oldest first
// (an event listed twice counts once).
func (ss *regSession) events(ctx context.Context, v *version) ([]event, error) {
	repo := ss.s.repo
	idx, err := remote.Referrers(repo.Digest(v.desc.Digest.String()), ss.with(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", v.ref(), ss.explain(repo, err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", v.ref(), err)
	}
	var evs []event
	seen := map[string]bool{}
	for _, d := range im.Manifests {
		if e, ok := parseEvent(d); ok && !seen[e.key()] {
			seen[e.key()] = true
			evs = append(evs, e)
		}
	}
	sortEvents(evs)
	return evs, nil
}

// writeEvent records e on v: the empty blob, then the event manifest by
// digest with v as its subject (go-containerregistry updates the referrers
// fallback tag when the registry has no referrers API). It then reads v's
// events back, and writes again should a concurrent fallback-tag update
// have dropped it.
func (ss *regSession) writeEvent(v *version, e event) error {
	repo := ss.s.repo
	raw, d, err := eventManifest(v.desc, e)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("recording the %s event of %s", e.Action, v.ref())
	if err := remote.WriteLayer(repo, static.NewLayer([]byte(emptyJSON), types.OCIEmptyJSON), ss.opts...); err != nil {
		return fmt.Errorf("%s: uploading the empty blob: %w", what, ss.explain(repo, err))
	}
	for range eventWrites {
		if err := remote.Put(repo.Digest(d.Digest.String()), rawManifest{raw, d.MediaType}, ss.opts...); err != nil {
			return fmt.Errorf("%s: %w", what, ss.explain(repo, err))
		}
		evs, err := ss.events(ss.ctx, v)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if slices.ContainsFunc(evs, func(x event) bool { return x.key() == e.key() }) {
			v.events = evs
			return nil
		}
	}
	return fmt.Errorf("%s: the registry does not list the event after %d writes: retry", what, eventWrites)
}

// copyTo publishes v in dst (see publish), reading it from the store's
// repository: blobs are mounted from there when dst is in the same
// registry, and only missing blobs are streamed otherwise.
func (ss *regSession) copyTo(v *version, dst name.Repository) error {
	src := ss.s.repo.Digest(v.desc.Digest.String())
	return publish(ss.ctx, ss.opts, v, dst, func() (any, error) {
		desc, err := remote.Get(src, ss.opts...)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, ss.explain(ss.s.repo, err))
		}
		if desc.MediaType.IsIndex() {
			return desc.ImageIndex()
		}
		return desc.Image()
	}, func() ([]referrer, error) { return registryReferrers(ss.ctx, ss.s.repo, v.desc.Digest, ss.opts) })
}

// tagged returns the digest tag points at, or the zero hash if none.
func (ss *regSession) tagged(tag name.Tag) (v1.Hash, error) {
	d, err := ss.head(ss.ctx, tag)
	if err != nil || d == nil {
		return v1.Hash{}, err
	}
	return d.Digest, nil
}

// stageRepo is where the stage tag of promotion we lives.
func (ss *regSession) stageRepo(we *event) (name.Repository, error) {
	if we.Repository == "" {
		return ss.s.repo, nil
	}
	r, err := name.NewRepository(we.Repository)
	if err != nil {
		return r, fmt.Errorf("the promote event of %s names repository %q: %w", we.Stage, we.Repository, err)
	}
	return r, nil
}

// converge reads everything and points the stage tag at the winner until
// two reads in a row, with no write between them, find it there (steps 3
// and 4 of Promote). One read is not enough: the versions' histories are
// read one by one while other processes write, so a read may see a
// demotion without the promotion that caused it. Events are only ever
// added and a promotion is written before any consequence of it, so what
// a read saw the effect of, the next read sees the cause of. converge
// returns the last read, the winner and its promotion.
func (ss *regSession) converge(stage string) (*regState, *version, *event, error) {
	var settled v1.Hash // the winner the previous read found holding the tag
	for round := 1; ; round++ {
		if round > maxRounds {
			return nil, nil, nil, fmt.Errorf("the %s stage did not settle in %d rounds: other promotions into it are running: retry", stage, maxRounds)
		}
		st, err := ss.read()
		if err != nil {
			return nil, nil, nil, err
		}
		w, we := st.winner(stage)
		if w == nil {
			// Mid-change, or every claim was revoked meanwhile.
			settled = v1.Hash{}
			continue
		}
		where, err := ss.stageRepo(we)
		if err != nil {
			return nil, nil, nil, err
		}
		tag := where.Tag(stage)
		h, err := ss.tagged(tag)
		if err != nil {
			return nil, nil, nil, err
		}
		if h == w.desc.Digest {
			if settled != w.desc.Digest {
				settled = w.desc.Digest
				continue // confirm with another read
			}
			// A tag of the stage left in another repository by an
			// earlier configuration would keep serving an old version.
			if err := emptyLeftBehind(ss.ctx, ss.opts, ss.s.recipe, ss.s.artifact, &st.lifecycle, stage, ss.s.repo, where); err != nil {
				return nil, nil, nil, err
			}
			return st, w, we, nil
		}
		settled = v1.Hash{}
		if where.Name() != ss.s.repo.Name() {
			if err := ss.copyTo(w, where); err != nil {
				return nil, nil, nil, err
			}
		}
		if err := remote.Put(tag, rawManifest{w.raw, w.desc.MediaType}, ss.opts...); err != nil {
			return nil, nil, nil, fmt.Errorf("tagging %s as %s: %w", w.ref(), tag, ss.explain(where, err))
		}
	}
}

// placements finds which digest holds each stage (the tag in the stage's
// repository) and where each version is: its repository, and every stage
// repository it was promoted into that still has it.
func (ss *regSession) placements(st *regState) (map[string]v1.Hash, map[*version][]catalog.Location, error) {
	return placements(ss.ctx, ss.opts, ss.s.reg.jobs, &st.lifecycle, st.others, ss.s.repo.Name())
}

// placements finds which digest holds each stage of lc and where each
// version is. A stage whose newest promotion names no repository is held
// by others[stage], a tag where the versions are; one in another
// repository by that repository's tag (a HEAD). Each version is at home
// (its registry repository, or the layout directory) and in every stage
// repository it was promoted into that still has its digest (a HEAD
// each), at most jobs requests at once.
func placements(ctx context.Context, opts []remote.Option, jobs int, lc *lifecycle, others map[string]v1.Hash, home string) (map[string]v1.Hash, map[*version][]catalog.Location, error) {
	holders := map[string]v1.Hash{}
	locations := map[*version][]catalog.Location{}
	var checks []func(context.Context) error // HEADs in other repositories
	var mu sync.Mutex                        // guards holders and locations once checks run
	for stage, repo := range lc.stageRepos() {
		if repo == "" {
			if h, ok := others[stage]; ok {
				holders[stage] = h
			}
			continue
		}
		r, err := name.NewRepository(repo)
		if err != nil {
			continue // not a repository bakery wrote
		}
		checks = append(checks, func(ctx context.Context) error {
			d, err := head(ctx, opts, r.Tag(stage))
			if d != nil {
				mu.Lock()
				holders[stage] = d.Digest
				mu.Unlock()
			}
			return err
		})
	}
	for _, v := range lc.versions {
		locations[v] = []catalog.Location{{Where: home, ID: v.desc.Digest.String()}}
		repos := map[string]bool{}
		for _, e := range v.events {
			if e.Action == catalog.ActionPromote && e.Repository != "" && e.Repository != home {
				repos[e.Repository] = true
			}
		}
		for repo := range repos {
			r, err := name.NewRepository(repo)
			if err != nil {
				continue
			}
			checks = append(checks, func(ctx context.Context) error {
				d, err := head(ctx, opts, r.Digest(v.desc.Digest.String()))
				if d != nil {
					mu.Lock()
					locations[v] = append(locations[v], catalog.Location{Where: r.Name(), ID: v.desc.Digest.String()})
					mu.Unlock()
				}
				return err
			})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, check := range checks {
		g.Go(func() error { return check(gctx) })
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for _, locs := range locations {
		slices.SortFunc(locs[1:], func(a, b catalog.Location) int { return strings.Compare(a.Where, b.Where) })
	}
	return holders, locations, nil
}

// head HEADs ref; it returns nil, nil if there is no such manifest.
func (ss *regSession) head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error) {
	return head(ctx, ss.opts, ref)
}

// head HEADs ref with opts and ctx; it returns nil, nil if there is no
// such manifest.
func head(ctx context.Context, opts []remote.Option, ref name.Reference) (*v1.Descriptor, error) {
	d, err := remote.Head(ref, append(slices.Clip(opts), remote.WithContext(ctx))...)
	if err != nil {
		if ctx.Err() == nil && isAbsent(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %s: %w", ref, explain(ctx, ref.Context(), err))
	}
	return d, nil
}

// repoAbsent reports whether err says the repository does not exist (yet):
// a tag listing answered 404.
func repoAbsent(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		return false
	}
	if terr.Request != nil && !strings.HasSuffix(terr.Request.URL.Path, "/tags/list") {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code != transport.NameUnknownErrorCode {
			return false
		}
	}
	return true
}
