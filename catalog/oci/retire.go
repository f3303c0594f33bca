package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Removal is what [LayoutStore.RemoveVersion] took out of index.json: the
// version's descriptor and its event artifacts, and the blobs they
// reached, which [Layout.Prune] deletes once nothing references them.
type Removal struct {
	// Ref is the version removed.
	Ref catalog.Ref
	// Digest is its manifest's (or index's) digest.
	Digest v1.Hash
	// Entries is how many index.json descriptors were removed.
	Entries int
	// Candidates are the blobs the removed descriptors reached.
	Candidates []v1.Hash
}

// PruneReport is what [Layout.Prune] deleted.
type PruneReport struct {
	// Blobs is how many blobs were deleted.
	Blobs int
	// Bytes is their total size.
	Bytes int64
	// Kept is how many candidates stayed because something references
	// them.
	Kept int
}

// RemoveVersion removes version e of the artifact from index.json: its
// NAME:VERSION descriptor and every event artifact whose subject is its
// digest, in one transaction committed under the layout lock. Right before,
// under that lock, it re-reads the layout and refuses (an error) when any
// other tag of the artifact, such as a stage tag, still names the
// version's digest. A version published to stage repositories by a
// promotion is first deleted there (its manifest by digest, which takes
// its STAGE_REPO:VERSION tag along), after checking that no stage tag
// there names it; a registry that refuses gives an error wrapping
// [ErrDeleteRefused] and the layout keeps the version, so a later run
// finishes the job. Its blobs stay: pass the returned Candidates to
// [Layout.Prune]. A version no longer in the layout is not an error: the
// Removal then has no entries.
func (s *LayoutStore) RemoveVersion(ctx context.Context, e catalog.Entry) (*Removal, error) {
	return s.removeVersion(ctx, e, nil)
}

// removeVersion removes e and, with ev, stages its tombstone in the same
// transaction.
func (s *LayoutStore) removeVersion(ctx context.Context, e catalog.Entry, ev *catalog.Event) (*Removal, error) {
	rm := &Removal{Ref: e.Ref}
	err := s.update(ctx, func(tx *Tx, st *layoutState) error {
		v := st.byTag[e.Version]
		if v == nil {
			return nil
		}
		rm.Digest = v.desc.Digest
		for tag, h := range st.others {
			if h == v.desc.Digest {
				return fmt.Errorf("the tag %s:%s points at it now: it is staged; demote it first or leave it", s.name, tag)
			}
		}
		if err := s.removePublished(ctx, st, v); err != nil {
			return err
		}
		descs, err := s.l.allDescriptors() // the history file lists the events
		if err != nil {
			return err
		}
		blobs := map[v1.Hash]v1.Descriptor{}
		for _, d := range descs {
			ref, named := d.Annotations[catalog.AnnotationRefName]
			switch {
			case named && ref == s.name+":"+e.Version && d.Digest == v.desc.Digest:
			case !named && d.Annotations[AnnotationSubject] == v.desc.Digest.String():
			default:
				continue
			}
			rm.Entries++
			if err := collect(ctx, d, nil, s.l.fetchManifest, blobs); err != nil {
				return fmt.Errorf("reading what %s references: %w", d.Digest, err)
			}
		}
		for h := range blobs {
			rm.Candidates = append(rm.Candidates, h)
		}
		slices.SortFunc(rm.Candidates, func(a, b v1.Hash) int { return compareHash(a, b) })
		if err := tx.Untag(s.name + ":" + e.Version); err != nil {
			return err
		}
		if ev != nil {
			if err := s.writeTombstone(tx, e.Version, v.desc.Digest, *ev); err != nil {
				return err
			}
		}
		return tx.detachSubject(v.desc.Digest)
	})
	if err != nil {
		return nil, fmt.Errorf("removing %s@%s (%s in layout %s): %w", s.recipe, e.Version, s.name, s.l.dir, err)
	}
	return rm, nil
}

func compareHash(a, b v1.Hash) int {
	if a.String() < b.String() {
		return -1
	}
	if a.String() > b.String() {
		return 1
	}
	return 0
}

// Prune deletes those of candidates that no descriptor of index.json
// references, directly or through a manifest or index, holding the layout
// lock so that no commit happens meanwhile. It deletes only candidates
// (the blobs of what was just removed), never other unreferenced blobs,
// which may belong to a bake whose transaction is not committed yet. A
// bake in progress that reuses one of those blobs finds it gone when it
// commits and fails asking for a retry; it never commits a dangling
// reference. Prune stops at the first blob when ctx ends: what it did not
// delete stays unreferenced, and the layout stays valid. If index.json
// references a manifest it cannot read, Prune deletes nothing.
func (l *Layout) Prune(ctx context.Context, candidates []v1.Hash) (PruneReport, error) {
	var rep PruneReport
	if len(candidates) == 0 {
		return rep, nil
	}
	unlock, err := l.Lock(ctx)
	if err != nil {
		return rep, fmt.Errorf("pruning layout: %w", err)
	}
	defer unlock()
	descs, err := l.allDescriptors() // the history file references blobs too
	if err != nil {
		return rep, fmt.Errorf("pruning layout: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("pruning layout %s: stopped before deleting anything: %w: run retire again to finish", l.dir, err)
	}
	keep := map[v1.Hash]v1.Descriptor{}
	for _, d := range descs {
		if err := collect(ctx, d, nil, l.fetchManifest, keep); err != nil {
			return rep, fmt.Errorf("pruning layout %s: %s is damaged (%w): nothing deleted; re-bake or untag it, then retry", l.dir, d.Digest, err)
		}
	}
	defer syncDir(l.blobDir())
	for _, h := range candidates {
		if _, ok := keep[h]; ok {
			rep.Kept++
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("pruning layout %s: stopped after %d blobs: %w: run retire again to finish", l.dir, rep.Blobs, err)
		}
		if err := checkHash(h); err != nil {
			return rep, fmt.Errorf("pruning layout %s: %w", l.dir, err)
		}
		p := l.BlobPath(h)
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return rep, fileError("pruning layout: reading", p, err)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fileError("pruning layout: removing", p, err)
		}
		rep.Blobs++
		rep.Bytes += fi.Size()
	}
	return rep, nil
}

// removePublished deletes v from every stage repository a promotion
// published it to (see [LayoutStore.Promote]), refusing when a stage tag
// there names it. It runs under the layout lock, before the layout
// forgets v, so that a failure leaves v listed and a later run retries.
func (s *LayoutStore) removePublished(ctx context.Context, st *layoutState, v *version) error {
	if !st.hasRemote() {
		return nil
	}
	opts, err := s.reg.sessionOptions(ctx)
	if err != nil {
		return err
	}
	holders, locations, err := placements(ctx, opts, s.reg.jobs, &st.lifecycle, st.others, s.l.dir)
	if err != nil {
		return err
	}
	for stage, h := range holders {
		if h == v.desc.Digest {
			return fmt.Errorf("it is in %s now: demote it first or leave it", stage)
		}
	}
	for _, loc := range locations[v] {
		if loc.Where == s.l.dir {
			continue
		}
		r, err := name.NewRepository(loc.Where)
		if err != nil {
			continue
		}
		with := append(slices.Clip(opts), remote.WithContext(ctx))
		ref := r.Digest(v.desc.Digest.String())
		err = remote.Delete(ref, with...)
		switch {
		case err == nil, ctx.Err() == nil && isAbsent(err):
		case refused(err):
			return fmt.Errorf("deleting %s: %w (%w): enable deletion on the registry or delete it there by hand", ref, ErrDeleteRefused, err)
		default:
			return fmt.Errorf("deleting %s: %w", ref, explain(ctx, r, err))
		}
		if err := deleteTag(ctx, with, r.Tag(v.image.Version)); err != nil {
			return err
		}
	}
	return nil
}
