package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File and directory names inside a layout.
const (
	ociLayoutFile = "oci-layout"
	indexFile     = "index.json"
	// historyFile is bakery's own file in a layout: an OCI image index
	// listing the event artifacts (see EventArtifactType), kept out of
	// index.json so that tools reading the layout (crane push, skopeo,
	// umoci, a base = "oci:DIR") see the images only.
	historyFile = "bakery-history.json"
	lockFile    = ".lock"
	tmpDir      = "tmp"
	blobsDir    = "blobs"
)

// DefaultDirName is the layout directory bakery uses, relative to the
// working directory, when BAKERY_HOME is not set.
const DefaultDirName = ".bakery"

// ociLayoutContent is the oci-layout marker file bakery writes.
const ociLayoutContent = `{"imageLayoutVersion":"1.0.0"}`

// emptyIndex is the index.json of a new layout.
const emptyIndex = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": []
}
`

// lockPoll bounds how long Lock sleeps between attempts.
const (
	lockPollMin = 10 * time.Millisecond
	lockPollMax = 250 * time.Millisecond
)

// DefaultDir returns the layout directory bakery uses: the value of
// BAKERY_HOME when getenv reports one, else [DefaultDirName]. Pass os.Getenv.
func DefaultDir(getenv func(string) string) string {
	if d := getenv("BAKERY_HOME"); d != "" {
		return d
	}
	return DefaultDirName
}

// Layout is an OCI image layout directory. Its values hold no state besides
// the path, so any number of them, in any number of processes, may work on
// the same directory: blob writes never collide and [Tx.Commit] serialises
// index updates with [Layout.Lock].
type Layout struct {
	dir string
}

// Compile-time check that Layout is a Store.
var _ Store = (*Layout)(nil)

// OpenLayout opens the OCI image layout at dir, creating dir, its oci-layout
// marker, blobs/sha256 and an empty index.json when missing (each file is
// written atomically, and never over one another process wrote first).
// A directory that holds other files but no oci-layout is refused.
func OpenLayout(dir string) (*Layout, error) {
	if dir == "" {
		return nil, errors.New("opening layout: no directory given: pass a path or set BAKERY_HOME")
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("opening layout %s: it is a file, not a directory: choose a directory path or set BAKERY_HOME", dir)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fileError("creating layout directory", dir, err)
		}
	case err != nil:
		return nil, fileError("opening layout", dir, err)
	}
	l := &Layout{dir: dir}

	marker := l.path(ociLayoutFile)
	b, err := os.ReadFile(marker)
	switch {
	case err == nil:
		var m struct {
			ImageLayoutVersion string `json:"imageLayoutVersion"`
		}
		if err := json.Unmarshal(b, &m); err != nil || !strings.HasPrefix(m.ImageLayoutVersion, "1.") {
			return nil, fmt.Errorf("opening layout %s: %s is not an OCI image layout version 1 marker (%q): restore it or choose another directory", dir, marker, strings.TrimSpace(string(b)))
		}
	case errors.Is(err, fs.ErrNotExist):
		// The marker is written first, so a directory without it is either
		// empty or something else: never adopt someone else's files.
		if err := l.checkEmpty(); err != nil {
			// Another process (or a recipe baking at the same time) may
			// have written the marker since: then the layout is theirs
			// and ours. Its blobs and index are made below, as for any.
			if _, statErr := os.Stat(marker); statErr != nil {
				return nil, err
			}
		} else if _, err := writeFileAtomic(marker, []byte(ociLayoutContent), false); err != nil {
			return nil, fmt.Errorf("creating layout %s: %w", dir, err)
		}
	default:
		return nil, fileError("reading", marker, err)
	}

	if err := os.MkdirAll(l.blobDir(), 0o755); err != nil {
		return nil, fileError("creating", l.blobDir(), err)
	}
	index := l.path(indexFile)
	if _, err := os.Stat(index); errors.Is(err, fs.ErrNotExist) {
		if _, err := writeFileAtomic(index, []byte(emptyIndex), false); err != nil {
			return nil, fmt.Errorf("creating layout %s: %w", dir, err)
		}
	} else if err != nil {
		return nil, fileError("reading", index, err)
	}
	if _, err := l.readIndex(); err != nil {
		return nil, err
	}
	return l, nil
}

// checkEmpty refuses a directory holding anything but what an interrupted
// OpenLayout may have left.
func (l *Layout) checkEmpty() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fileError("reading", l.dir, err)
	}
	var foreign []string
	for _, e := range entries {
		n := e.Name()
		if n == lockFile || n == tmpDir || strings.HasPrefix(n, tmpPrefix) {
			continue
		}
		foreign = append(foreign, n)
	}
	if len(foreign) == 0 {
		return nil
	}
	return fmt.Errorf("opening layout %s: the directory is not an OCI image layout (it has no %s file but holds %q and %d other entries): choose an empty or new directory, or set BAKERY_HOME to one",
		l.dir, ociLayoutFile, foreign[0], len(foreign)-1)
}

// Dir returns the layout's directory.
func (l *Layout) Dir() string { return l.dir }

func (l *Layout) path(elem ...string) string {
	return filepath.Join(append([]string{l.dir}, elem...)...)
}

func (l *Layout) blobDir() string { return l.path(blobsDir, "sha256") }

// Lock takes the layout's exclusive advisory lock (flock on dir/.lock),
// polling until it is free or ctx ends. Call unlock to release it. The lock
// is not reentrant, even within one process: do not hold it while calling
// [Tx.Commit] or [Tx.Rollback], which take it themselves.
func (l *Layout) Lock(ctx context.Context) (unlock func(), err error) {
	path := l.path(lockFile)
	wait := lockPollMin
	for {
		f, busy, err := tryLock(path)
		if err != nil {
			return nil, fileError("locking layout with", path, err)
		}
		if !busy {
			return func() { unlockFile(f) }, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("locking layout %s: another bakery process holds the layout (lock file %s): wait for it to finish, then retry: %w", l.dir, path, ctx.Err())
		case <-t.C:
		}
		if wait *= 2; wait > lockPollMax {
			wait = lockPollMax
		}
	}
}

// readIndex reads and parses index.json.
func (l *Layout) readIndex() (*v1.IndexManifest, error) {
	path := l.path(indexFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError("reading", path, err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("reading %s: it is not a valid OCI image index: %w: restore it from a backup", path, err)
	}
	return &im, nil
}

// Descriptors returns the descriptors listed in index.json, in order, with
// their annotations.
func (l *Layout) Descriptors() ([]v1.Descriptor, error) {
	im, err := l.readIndex()
	if err != nil {
		return nil, err
	}
	return im.Manifests, nil
}

// History returns the event artifacts of the layout's history file (see
// [EventArtifactType]), in order, with their annotations; none when the
// layout has no history yet. Layouts written by older bakery versions
// list them in index.json instead (see [Layout.Descriptors]); the next
// change bakery commits moves them here.
func (l *Layout) History() ([]v1.Descriptor, error) {
	path := l.path(historyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fileError("reading", path, err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("reading %s: it is not a valid OCI image index: %w: restore it from a backup", path, err)
	}
	return im.Manifests, nil
}

// allDescriptors returns the descriptors of index.json, then those of the
// history file: everything in the layout that references blobs.
func (l *Layout) allDescriptors() ([]v1.Descriptor, error) {
	descs, err := l.Descriptors()
	if err != nil {
		return nil, err
	}
	hist, err := l.History()
	if err != nil {
		return nil, err
	}
	return append(descs, hist...), nil
}

// isEventEntry reports whether d, a descriptor of index.json or of the
// history file, lists an event artifact rather than an image.
func isEventEntry(d v1.Descriptor) bool {
	_, named := d.Annotations[catalog.AnnotationRefName]
	return !named && d.Annotations[AnnotationSubject] != ""
}

// Find returns the descriptor tagged refName ("NAME:TAG", stored in the
// org.opencontainers.image.ref.name annotation), or nil, nil if there is
// none. Should several descriptors carry the name, the last one wins.
func (l *Layout) Find(refName string) (*v1.Descriptor, error) {
	descs, err := l.Descriptors()
	if err != nil {
		return nil, err
	}
	for i := len(descs) - 1; i >= 0; i-- {
		if descs[i].Annotations[catalog.AnnotationRefName] == refName {
			d := descs[i]
			return &d, nil
		}
	}
	return nil, nil
}

// Image returns the image desc (a descriptor of index.json) describes,
// reading lazily from the layout.
func (l *Layout) Image(desc v1.Descriptor) (v1.Image, error) {
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("reading image %s from layout %s: it is a %s, not an image manifest: use Index", desc.Digest, l.dir, desc.MediaType)
	}
	img, err := layout.Path(l.dir).Image(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("reading image %s from layout %s: %w", desc.Digest, l.dir, err)
	}
	return img, nil
}

// Index returns the image index desc (a descriptor of index.json)
// describes, reading lazily from the layout.
func (l *Layout) Index(desc v1.Descriptor) (v1.ImageIndex, error) {
	if !desc.MediaType.IsIndex() {
		return nil, fmt.Errorf("reading index %s from layout %s: it is a %s, not an image index: use Image", desc.Digest, l.dir, desc.MediaType)
	}
	root, err := layout.Path(l.dir).ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading index %s from layout %s: %w", desc.Digest, l.dir, err)
	}
	idx, err := root.ImageIndex(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("reading index %s from layout %s: %w", desc.Digest, l.dir, err)
	}
	return idx, nil
}

// Lookup returns the image tagged ref ("NAME:TAG") in the layout, or
// nil, nil if there is none. It reads the manifest's (or index's)
// annotations and sums the sizes of every blob the image references, each
// counted once.
func (l *Layout) Lookup(ctx context.Context, ref string) (*catalog.Image, error) {
	desc, err := l.Find(ref)
	if err != nil || desc == nil {
		return nil, err
	}
	raw, err := l.readBlob(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("looking up %s in layout %s: %w: the layout is damaged; re-bake the image", ref, l.dir, err)
	}
	blobs := map[v1.Hash]v1.Descriptor{}
	if err := collect(ctx, *desc, raw, l.fetchManifest, blobs); err != nil {
		return nil, fmt.Errorf("looking up %s in layout %s: %w: the layout is damaged; re-bake the image", ref, l.dir, err)
	}
	return imageFromManifest(ref, desc.Digest, raw, totalSize(blobs))
}

// readBlob reads a whole blob, e.g. a manifest.
func (l *Layout) readBlob(h v1.Hash) ([]byte, error) {
	if err := checkHash(h); err != nil {
		return nil, err
	}
	return os.ReadFile(l.BlobPath(h))
}

// fetchManifest reads a child manifest for collect.
func (l *Layout) fetchManifest(_ context.Context, d v1.Descriptor) ([]byte, error) {
	return l.readBlob(d.Digest)
}

// isManifest reports whether mt names a manifest or index, whose blob
// references further blobs.
func isManifest(mt types.MediaType) bool { return mt.IsImage() || mt.IsIndex() }
