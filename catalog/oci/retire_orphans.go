package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// UnreferencedBlob is a blob of the layout that no descriptor of
// index.json or of the history file references, directly or through a
// manifest or index: left by
// a prune or a bake that was killed, or staged by a bake that has not
// committed yet.
type UnreferencedBlob struct {
	// Digest names it.
	Digest v1.Hash
	// Size is its size in bytes.
	Size int64
	// Modified is when it was written (its file's modification time).
	Modified time.Time
}

// UnreferencedBlobs lists the blobs of blobs/sha256 that nothing in
// index.json or the history file references, oldest first. A bake writes its blobs before it
// commits index.json, so a young one may be a bake's in progress: the
// caller judges by Modified (retire waits a day). Files whose names are
// not a sha256 digest are left out. If index.json references a manifest it
// cannot read, it lists nothing and returns the error.
func (l *Layout) UnreferencedBlobs(ctx context.Context) ([]UnreferencedBlob, error) {
	what := fmt.Sprintf("listing the unreferenced blobs of layout %s", l.dir)
	descs, err := l.allDescriptors() // the history file references blobs too
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	keep := map[v1.Hash]v1.Descriptor{}
	for _, d := range descs {
		if err := collect(ctx, d, nil, l.fetchManifest, keep); err != nil {
			return nil, fmt.Errorf("%s: %s is damaged (%w): re-bake or untag it, then retry", what, d.Digest, err)
		}
	}
	ents, err := os.ReadDir(l.blobDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fileError(what+": reading", l.blobDir(), err)
	}
	var out []UnreferencedBlob
	for _, ent := range ents {
		h, err := v1.NewHash("sha256:" + ent.Name())
		if err != nil || !ent.Type().IsRegular() || checkHash(h) != nil {
			continue
		}
		if _, ok := keep[h]; ok {
			continue
		}
		fi, err := ent.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fileError(what+": reading", l.BlobPath(h), err)
		}
		out = append(out, UnreferencedBlob{Digest: h, Size: fi.Size(), Modified: fi.ModTime().UTC()})
	}
	slices.SortFunc(out, func(a, b UnreferencedBlob) int { return a.Modified.Compare(b.Modified) })
	return out, nil
}
