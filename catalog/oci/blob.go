package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"golang.org/x/sync/errgroup"
)

// layerJobs bounds how many layers WriteImage streams at once.
const layerJobs = 4

// checkHash accepts only sha256 digests, the only algorithm a bakery layout
// stores, and rejects anything that could escape blobs/sha256.
func checkHash(h v1.Hash) error {
	if h.Algorithm != "sha256" {
		return fmt.Errorf("blob digest %q uses algorithm %q: only sha256 is supported", h.String(), h.Algorithm)
	}
	if len(h.Hex) != sha256.Size*2 {
		return fmt.Errorf("blob digest %q is not a sha256 digest", h.String())
	}
	if _, err := hex.DecodeString(h.Hex); err != nil {
		return fmt.Errorf("blob digest %q is not a sha256 digest: %w", h.String(), err)
	}
	return nil
}

// BlobPath returns where the blob with digest h is (or would be) stored:
// dir/blobs/ALGORITHM/HEX.
func (l *Layout) BlobPath(h v1.Hash) string {
	return l.path(blobsDir, h.Algorithm, h.Hex)
}

// HasBlob reports whether the layout holds the blob with digest h. Blobs
// only ever appear complete, so presence means the whole blob is there.
func (l *Layout) HasBlob(h v1.Hash) (bool, error) {
	if err := checkHash(h); err != nil {
		return false, err
	}
	fi, err := os.Stat(l.BlobPath(h))
	switch {
	case err == nil:
		return fi.Mode().IsRegular(), nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fileError("checking blob", l.BlobPath(h), err)
	}
}

// TempDir creates a new staging directory inside the layout (dir/tmp/stage-*),
// on the layout's filesystem, so that files written there can be moved into
// place with [Layout.AdoptBlob]. The caller removes it when done.
func (l *Layout) TempDir() (string, error) {
	parent := l.path(tmpDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fileError("creating staging directory in", parent, err)
	}
	removeStale(parent, time.Now().Add(-StaleAfter))
	d, err := os.MkdirTemp(parent, "stage-")
	if err != nil {
		return "", fileError("creating staging directory in", parent, err)
	}
	return d, nil
}

// StaleAfter is the age after which a staging directory is taken to be
// left by a killed bakery (SIGKILL, power loss: no cleanup could run).
// Every bake removes such directories when it starts staging.
const StaleAfter = 24 * time.Hour

// removeStale removes staging directories under parent last modified
// before cutoff. It is best effort: what cannot be removed stays.
func removeStale(parent string, cutoff time.Time) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "stage-") {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().Before(cutoff) {
			_ = os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

// WriteBlob stores the content of r as the blob with digest h. If the blob
// is already present it does nothing (r is not read) and created is false.
// Otherwise r is streamed to a temporary file in blobs/sha256, its digest
// verified, the file fsynced and linked into place, so no partial or wrong
// blob ever has its final name. On any error nothing is left behind.
func (l *Layout) WriteBlob(h v1.Hash, r io.Reader) (created bool, err error) {
	_, created, err = l.writeBlob(context.Background(), h, r)
	return created, err
}

// writeBlob is WriteBlob with cancellation. When want.Hex is empty the
// digest is not known in advance: the content's own digest is used and
// returned.
func (l *Layout) writeBlob(ctx context.Context, want v1.Hash, r io.Reader) (got v1.Hash, created bool, err error) {
	known := want.Hex != ""
	if known {
		has, err := l.HasBlob(want)
		if err != nil || has {
			return want, false, err
		}
	}
	dir := l.blobDir()
	name := dir + string(filepath.Separator) + "<unknown digest>"
	prefix := tmpPrefix
	if known {
		name = l.BlobPath(want)
		prefix += want.Hex[:12] + "-"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return got, false, fileError("creating", dir, err)
	}
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return got, false, fileError("writing blob", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()

	w := &hashWriter{f: f, h: sha256.New()}
	if _, err = io.Copy(w, ctxReader{ctx: ctx, r: r}); err != nil {
		if w.err != nil {
			return got, false, fileError("writing blob", name, w.err)
		}
		return got, false, fmt.Errorf("writing blob %s: reading its content: %w", name, err)
	}
	got = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.h.Sum(nil))}
	if known && got != want {
		err = fmt.Errorf("writing blob %s: content has digest %s, not %s: the source is corrupt or changed while reading; retry", name, got, want)
		return got, false, err
	}
	name = l.BlobPath(got)
	if err = f.Sync(); err != nil {
		return got, false, fileError("writing blob", name, err)
	}
	if err = f.Close(); err != nil {
		return got, false, fileError("writing blob", name, err)
	}
	if err = os.Chmod(tmp, 0o644); err != nil {
		return got, false, fileError("writing blob", name, err)
	}
	if created, err = placeNoReplace(tmp, name); err != nil {
		return got, false, fileError("writing blob", name, err)
	}
	syncDir(dir)
	return got, created, nil
}

// AdoptBlob moves the complete file tmpPath, e.g. a freshly built layer, into
// place as the blob with digest h, after checking its digest. tmpPath must
// be on the layout's filesystem (use [Layout.TempDir]). AdoptBlob takes
// ownership of tmpPath: whatever the outcome, it has been moved or removed
// when AdoptBlob returns. created is false if the blob was already present.
func (l *Layout) AdoptBlob(h v1.Hash, tmpPath string) (created bool, err error) {
	return l.adopt(h, tmpPath, -1)
}

// adopt is AdoptBlob; with size >= 0 it checks the file's size instead of
// its digest (see AdoptBuiltBlob).
func (l *Layout) adopt(h v1.Hash, tmpPath string, size int64) (created bool, err error) {
	defer func() {
		if err != nil || !created {
			_ = os.Remove(tmpPath)
		}
	}()
	has, err := l.HasBlob(h)
	if err != nil || has {
		return false, err
	}
	name := l.BlobPath(h)
	f, err := os.OpenFile(tmpPath, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("adopting %s as blob %s: %w", tmpPath, h, err)
	}
	hw := sha256.New()
	var n int64
	if size < 0 {
		_, err = io.Copy(hw, f)
	} else if n, err = f.Seek(0, io.SeekEnd); err == nil && n != size {
		err = fmt.Errorf("the file has %d bytes, the blob %d: the file is incomplete or was changed; rebuild it", n, size)
	}
	if err == nil {
		// The producer may not have fsynced: the blob must be durable
		// before it gets its final name.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fileError("adopting blob "+h.String()+" from", tmpPath, err)
	}
	if got := hex.EncodeToString(hw.Sum(nil)); size < 0 && got != h.Hex {
		return false, fmt.Errorf("adopting %s as blob %s: its content has digest sha256:%s: the file is incomplete or was changed; rebuild it", tmpPath, h, got)
	}
	if err := os.Chmod(tmpPath, 0o644); err != nil {
		return false, fileError("adopting blob "+h.String()+" from", tmpPath, err)
	}
	if err := os.MkdirAll(l.blobDir(), 0o755); err != nil {
		return false, fileError("creating", l.blobDir(), err)
	}
	created, err = placeNoReplace(tmpPath, name)
	if errors.Is(err, syscall.EXDEV) {
		return false, fmt.Errorf("adopting %s as blob %s: it is on another filesystem than the layout: stage files under Layout.TempDir(): %w", tmpPath, h, err)
	}
	if err != nil {
		return false, fileError("writing blob", name, err)
	}
	syncDir(l.blobDir())
	return created, nil
}

// WriteImage writes img's layers (streamed from wherever they come from,
// e.g. a remote base image, several at a time), config and manifest, in that
// order, skipping each blob already present, and returns the digests of the
// blobs it created. Non-distributable layers are not stored. On error the
// returned slice still lists the blobs created before the failure: they are
// complete but unreferenced; write through a [Tx] to have them removed.
// WriteImage does not change index.json: tag the image with [Tx.Tag].
func (l *Layout) WriteImage(ctx context.Context, img v1.Image) ([]v1.Hash, error) {
	var rec recorder
	err := l.writeImage(ctx, img, &rec)
	return rec.list(), err
}

// WriteIndex writes idx and, recursively, every child index and image it
// lists (see [Layout.WriteImage]), and returns the digests of the blobs it
// created, also on error. It does not change index.json.
func (l *Layout) WriteIndex(ctx context.Context, idx v1.ImageIndex) ([]v1.Hash, error) {
	var rec recorder
	err := l.writeIndex(ctx, idx, &rec)
	return rec.list(), err
}

func (l *Layout) writeImage(ctx context.Context, img v1.Image, rec *recorder) error {
	d, err := img.Digest()
	if err != nil {
		return fmt.Errorf("writing image: computing its digest: %w", err)
	}
	// Every blob is checked on its own, even when the manifest is present:
	// that repairs a layout that lost a layer.
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("writing image %s: listing its layers: %w", d, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerJobs)
	seen := map[v1.Hash]bool{}
	for _, layer := range layers {
		if ld, err := layer.Digest(); err == nil {
			if seen[ld] {
				continue
			}
			seen[ld] = true
		}
		g.Go(func() error { return l.writeLayer(gctx, layer, rec) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("writing image %s: %w", d, err)
	}

	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("writing image %s: reading its config digest: %w", d, err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("writing image %s: reading its config: %w", d, err)
	}
	if err := l.writeRecorded(ctx, cfgName, bytes.NewReader(cfg), rec); err != nil {
		return fmt.Errorf("writing image %s: %w", d, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("writing image %s: reading its manifest: %w", d, err)
	}
	if err := l.writeRecorded(ctx, d, bytes.NewReader(raw), rec); err != nil {
		return fmt.Errorf("writing image %s: %w", d, err)
	}
	return nil
}

func (l *Layout) writeLayer(ctx context.Context, layer v1.Layer, rec *recorder) error {
	if mt, err := layer.MediaType(); err == nil && !mt.IsDistributable() {
		return nil
	}
	want, err := layer.Digest()
	switch {
	case errors.Is(err, stream.ErrNotComputed):
		want = v1.Hash{} // learnt while writing
	case err != nil:
		return fmt.Errorf("reading layer digest: %w", err)
	default:
		if has, err := l.HasBlob(want); err != nil || has {
			return err
		}
	}
	rc, err := layer.Compressed()
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", want, err)
	}
	defer rc.Close()
	got, created, err := l.writeBlob(ctx, want, rc)
	if created {
		rec.add(got)
	}
	return err
}

func (l *Layout) writeRecorded(ctx context.Context, h v1.Hash, r io.Reader, rec *recorder) error {
	got, created, err := l.writeBlob(ctx, h, r)
	if created {
		rec.add(got)
	}
	return err
}

// withLayer and withBlob are how an index may expose children that are
// neither images nor indexes.
type withLayer interface {
	Layer(v1.Hash) (v1.Layer, error)
}

type withBlob interface {
	Blob(v1.Hash) (io.ReadCloser, error)
}

func (l *Layout) writeIndex(ctx context.Context, idx v1.ImageIndex, rec *recorder) error {
	d, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("writing index: computing its digest: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("writing index %s: reading it: %w", d, err)
	}
	for _, child := range im.Manifests {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("writing index %s: %w", d, err)
		}
		switch {
		case child.MediaType.IsIndex():
			ci, err := idx.ImageIndex(child.Digest)
			if err != nil {
				return fmt.Errorf("writing index %s: reading child index %s: %w", d, child.Digest, err)
			}
			if err := l.writeIndex(ctx, ci, rec); err != nil {
				return err
			}
		case child.MediaType.IsImage():
			img, err := idx.Image(child.Digest)
			if err != nil {
				return fmt.Errorf("writing index %s: reading child image %s: %w", d, child.Digest, err)
			}
			if err := l.writeImage(ctx, img, rec); err != nil {
				return err
			}
		default:
			if err := l.writeChildBlob(ctx, idx, child, rec); err != nil {
				return fmt.Errorf("writing index %s: %w", d, err)
			}
		}
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return fmt.Errorf("writing index %s: reading it: %w", d, err)
	}
	if err := l.writeRecorded(ctx, d, bytes.NewReader(raw), rec); err != nil {
		return fmt.Errorf("writing index %s: %w", d, err)
	}
	return nil
}

func (l *Layout) writeChildBlob(ctx context.Context, idx v1.ImageIndex, child v1.Descriptor, rec *recorder) error {
	if has, err := l.HasBlob(child.Digest); err != nil || has {
		return err
	}
	var rc io.ReadCloser
	var err error
	switch src := idx.(type) {
	case withLayer:
		var layer v1.Layer
		if layer, err = src.Layer(child.Digest); err == nil {
			rc, err = layer.Compressed()
		}
	case withBlob:
		rc, err = src.Blob(child.Digest)
	default:
		return fmt.Errorf("child %s has media type %s, and the index cannot serve it as a blob", child.Digest, child.MediaType)
	}
	if err != nil {
		return fmt.Errorf("reading child %s: %w", child.Digest, err)
	}
	defer rc.Close()
	return l.writeRecorded(ctx, child.Digest, rc, rec)
}

// recorder collects the digests of created blobs; it is safe for
// concurrent use.
type recorder struct {
	mu     sync.Mutex
	hashes []v1.Hash
}

func (r *recorder) add(h v1.Hash) {
	r.mu.Lock()
	r.hashes = append(r.hashes, h)
	r.mu.Unlock()
}

func (r *recorder) list() []v1.Hash {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]v1.Hash(nil), r.hashes...)
}

// hashWriter writes to f and hashes what it wrote, keeping the write error
// apart from read errors.
type hashWriter struct {
	f   *os.File
	h   hash.Hash
	err error
}

func (w *hashWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	if err != nil {
		w.err = err
	}
	return n, err
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
