package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// layerBufSize is the read buffer of BuildLayer.
const layerBufSize = 1 << 20

// maxLayerConcurrency caps the default number of blocks compressed at
// once per layer, which bounds memory (about 2.2 MiB per block) on
// machines with many cores.
const maxLayerConcurrency = 8

// Built is a layer that BuildLayer wrote to a file, with the digests it
// computed while writing it.
type Built struct {
	// Path is the compressed tar file. The caller owns it: move it into
	// place or remove it.
	Path string
	// MediaType is the layer's OCI media type, which names its
	// compression: application/vnd.oci.image.layer.v1.tar+gzip or
	// application/vnd.oci.image.layer.v1.tar+zstd.
	MediaType types.MediaType
	// Digest is the sha256 of the compressed file: the layer's blob digest.
	Digest v1.Hash
	// DiffID is the sha256 of the uncompressed tar stream.
	DiffID v1.Hash
	// Size is the size of the compressed file in bytes.
	Size int64

	layer v1.Layer
	// inputs is what the bake key holds of the layer's files, hashed
	// while they were written (see withInputSums); nil otherwise.
	inputs *inputPlan
}

// Layer returns the file as an OCI layer of b.MediaType whose Digest,
// DiffID and Size are the fields of b, not computed again. Its Compressed and
// Uncompressed methods open Path, so they fail once the file has been
// moved or removed.
func (b *Built) Layer() v1.Layer { return b.layer }

// LayerOption configures BuildLayer.
type LayerOption func(*layerOptions)

type layerOptions struct {
	concurrency int
	kept        keptDirs // folders that exist below the layer (see withKept)
	compression recipes.Compression
	inputSums   bool // hash each file's content for the bake key too (see withInputSums)
	observe     EntryObserver
}

// EntryObserver sees every entry BuildLayer writes, in order: h is the
// entry's tar header as written, src the file its content is read from
// ("" for an entry of a tarball source). The content of a regular file
// is then written to the returned writer, if not nil, in the same pass
// that writes the layer (it is never read twice); the entry ends at the
// next call or when BuildLayer returns. It must not keep h or the bytes
// it is given, and a write error is ignored.
type EntryObserver func(h *tar.Header, src string) io.Writer

// WithEntryObserver makes BuildLayer call fn for every entry it writes
// (see EntryObserver). Default: none.
func WithEntryObserver(fn EntryObserver) LayerOption {
	return func(o *layerOptions) { o.observe = fn }
}

// withInputSums makes BuildLayer hash the content of a file or folder
// layer's regular files for the bake key (see HashInputs) as it writes
// them, so that a bake whose key is not known yet reads every input
// once, not twice. A tarball layer's archive is not hashed.
func withInputSums() LayerOption {
	return func(o *layerOptions) { o.inputSums = true }
}

// WithLayerConcurrency sets how many 1 MiB blocks of one layer are
// compressed at once. It changes speed and memory (about 2.2 MiB
// per block), never the bytes of the layer. The default is
// runtime.GOMAXPROCS(0), at most 8; n < 1 keeps the default.
func WithLayerConcurrency(n int) LayerOption {
	return func(o *layerOptions) {
		if n >= 1 {
			o.concurrency = n
		}
	}
}

// WithCompression sets how the layer is compressed: recipes.CompressionGzip
// (the default, also for "") or recipes.CompressionZstd. See
// compressBlockSize for what each writes.
func WithCompression(c recipes.Compression) LayerOption {
	return func(o *layerOptions) { o.compression = c }
}

// BuildLayer writes the layer l as a compressed tar file in dir and
// returns it with its digests, which are computed in the same single
// pass that reads the sources. Memory does not grow with the size of
// the inputs.
//
// The tar stream is deterministic. It starts with the folders leading to
// the destination (mode 0755, owned by the layer's owner; a folder that
// exists below the layer is written as it is there, see keptDirs), followed by
// the entries of a file or folder source in byte order of their names
// (a folder before its contents), or those of a tarball source in
// archive order. Names are relative, folders end in "/". Every time is
// epoch (whole seconds, none before 1970); owners are l.UID and l.GID
// (default 0) without names; there are no extended attributes. Folders
// have mode 0755, symlinks 0777 and regular files l.Mode, or else 0755
// when any execute bit is set and 0644 when none is. Symlinks are kept
// as they are; hard links in a folder are written as regular files;
// devices, sockets and named pipes are an error. A tarball entry below a
// symlink the archive made earlier (which an extractor would write
// wherever the symlink points), or a hard link to a name that is no
// longer a regular file there, is an error too. The compressed stream
// (gzip unless WithCompression says zstd) is the same whatever the
// concurrency: blocks that look random are stored rather than deflated.
//
// step receives the total number of input bytes and the progress made;
// the caller still calls step.Done. step may be nil.
//
// On error or when ctx is cancelled, the file is removed. BuildLayer
// may be called concurrently, for instance for the layers of one image.
func BuildLayer(ctx context.Context, l *recipes.Layer, dir string, epoch time.Time, step progress.Step, opts ...LayerOption) (_ *Built, err error) {
	o := layerOptions{concurrency: min(runtime.GOMAXPROCS(0), maxLayerConcurrency)}
	for _, opt := range opts {
		opt(&o)
	}
	o.compression = normalCompression(o.compression)
	switch o.compression {
	case recipes.CompressionGzip, recipes.CompressionZstd:
	default:
		return nil, fmt.Errorf("building layer from %s: unknown compression %q: use gzip or zstd", l.Source, o.compression)
	}
	if step == nil {
		step = progress.Discard().Step("")
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("building layer from %s: %w", l.Source, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	var (
		entries []layerEntry
		archive *os.File
		total   int64
	)
	switch l.Kind {
	case recipes.SourceFile, recipes.SourceDir:
		if entries, err = layerEntries(ctx, l); err != nil {
			return nil, err
		}
		for i, e := range entries {
			entries[i] = o.kept.keep(e)
			total += e.size
		}
	case recipes.SourceTarball:
		if archive, total, err = openTarball(l); err != nil {
			return nil, err
		}
		defer archive.Close()
	default:
		return nil, fmt.Errorf("unknown source kind %q: use file, dir or tarball", l.Kind)
	}
	step.SetTotal(total)

	ext := ".tar.gz"
	if o.compression == recipes.CompressionZstd {
		ext = ".tar.zst"
	}
	f, err := os.CreateTemp(dir, "layer-*"+ext)
	if err != nil {
		return nil, fmt.Errorf("creating the layer file: %w; check that %s exists and is writable", err, dir)
	}
	w := newLayerWriter(ctx, f, epoch, step, o.compression, o.concurrency)
	w.observe = o.observe
	if o.inputSums && archive == nil {
		w.inputs = &inputPlan{l: l, entries: entries}
		w.inputHash = newInputHash()
	}
	defer func() {
		if err != nil {
			w.abort()
			f.Close()
			os.Remove(f.Name())
		}
	}()

	if archive != nil {
		err = w.writeTarball(l, archive, o.kept)
	} else {
		err = w.writeEntries(entries)
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	diffID, digest, size, err := w.close()
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer file: %w", err)
	}
	mt := layerMediaType(o.compression)
	fl := &fileLayer{path: f.Name(), digest: digest, diffID: diffID, size: size, mediaType: mt}
	layer, err := partial.CompressedToLayer(fl)
	if err != nil {
		return nil, err
	}
	return &Built{Path: fl.path, MediaType: mt, Digest: digest, DiffID: diffID, Size: size, layer: layer, inputs: w.inputs}, nil
}

// layerWriter writes one layer: tar → (diffID hash, parallel block
// compression) → (file, digest hash).
type layerWriter struct {
	ctx   context.Context
	step  progress.Step
	epoch time.Time
	sink  *layerSink
	comp  *blockCompressor
	diff  hash.Hash
	tar   *tarSink
	tw    *tar.Writer
	// buf is copyN's buffer, made when first needed: a layer of files
	// and folders reads straight into the compressor's blocks.
	buf []byte
	// probe receives the byte that shows a file grew after it was listed.
	probe [1]byte
	// inputs, when not nil, receives a job with the content hash
	// (inputHash) of every regular file written.
	inputs    *inputPlan
	inputHash hash.Hash
	// observe and cur: see EntryObserver; cur receives the current
	// entry's content.
	observe EntryObserver
	cur     io.Writer
}

func newLayerWriter(ctx context.Context, f *os.File, epoch time.Time, step progress.Step, compression recipes.Compression, concurrency int) *layerWriter {
	sink := &layerSink{f: f, h: sha256.New(), writeback: fileWriteback(f)}
	comp := newBlockCompressor(sink, compression, concurrency)
	diff := sha256.New()
	sec := max(epoch.Unix(), 0)
	ts := &tarSink{diff: diff, comp: comp}
	return &layerWriter{
		ctx:   ctx,
		step:  step,
		epoch: time.Unix(sec, 0),
		sink:  sink,
		comp:  comp,
		diff:  diff,
		tar:   ts,
		tw:    tar.NewWriter(ts),
	}
}

// tarSink receives the tar stream: it hashes it (the diffID) and hands
// it to the compressor. While placed is set, the bytes it is given are
// already in the compressor's block, read there by readFile, and are
// only hashed and counted in.
type tarSink struct {
	diff   hash.Hash
	comp   *blockCompressor
	placed bool
}

func (s *tarSink) Write(p []byte) (int, error) {
	s.diff.Write(p)
	if s.placed {
		return s.comp.commit(p)
	}
	return s.comp.Write(p)
}

// header returns the tar header of e.
func (w *layerWriter) header(e layerEntry) *tar.Header {
	h := &tar.Header{
		Typeflag: e.typ,
		Name:     e.name,
		Linkname: e.link,
		Mode:     e.mode,
		Uid:      e.uid,
		Gid:      e.gid,
		ModTime:  w.epoch,
		Format:   tar.FormatPAX,
	}
	if e.typ == tar.TypeReg {
		h.Size = e.size
	}
	if e.kept != nil {
		e.kept.apply(h)
	}
	return h
}

// writeHeader writes the header of e.
func (w *layerWriter) writeHeader(e layerEntry) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	h := w.header(e)
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("writing %s to the layer: %w", e.name, err)
	}
	if w.observe != nil {
		w.cur = w.observe(h, e.src)
	}
	return nil
}

// writeEntries writes entries listed from files and folders, reading
// regular files from disk.
func (w *layerWriter) writeEntries(entries []layerEntry) error {
	for _, e := range entries {
		if err := w.writeHeader(e); err != nil {
			return err
		}
		if e.typ == tar.TypeReg {
			if err := w.writeFile(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFile writes the content of a regular file, which must still have
// the size it was listed with.
func (w *layerWriter) writeFile(e layerEntry) error {
	f, err := openInput(e.src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", e.src, err)
	}
	defer f.Close()
	if w.inputs != nil {
		w.inputHash.Reset()
	}
	err = w.readFile(&layerReader{ctx: w.ctx, r: f, step: w.step}, e.size)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errChanged(e.src)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", e.src, err)
	}
	if m, _ := f.Read(w.probe[:]); m > 0 {
		return errChanged(e.src)
	}
	if w.inputs != nil {
		j := inputJob{path: e.src, name: e.src, size: e.size}
		w.inputHash.Sum(j.sum[:0])
		w.inputs.jobs = append(w.inputs.jobs, j)
	}
	return nil
}

// readFile copies exactly n bytes from r into the current tar entry as
// copyN does, but reads them straight into the compressor's block, which
// spares copying every byte of every file once more. It returns
// io.ErrUnexpectedEOF if r ends early.
func (w *layerWriter) readFile(r io.Reader, n int64) error {
	for n > 0 {
		if err := w.comp.failed(); err != nil {
			return err
		}
		chunk := w.comp.space()
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		m, err := io.ReadFull(r, chunk)
		if m > 0 {
			if w.inputs != nil {
				w.inputHash.Write(chunk[:m])
			}
			if w.cur != nil {
				_, _ = w.cur.Write(chunk[:m])
			}
			// The tar writer passes chunk[:m] on to w.tar, which finds it
			// in place.
			w.tar.placed = true
			_, werr := w.tw.Write(chunk[:m])
			w.tar.placed = false
			if werr != nil {
				return werr
			}
			n -= int64(m)
		}
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyN copies exactly n bytes from r into the current tar entry, in
// chunks of the writer's buffer. It returns io.ErrUnexpectedEOF if r
// ends early.
func (w *layerWriter) copyN(r io.Reader, n int64) error {
	if w.buf == nil {
		w.buf = make([]byte, layerBufSize)
	}
	for n > 0 {
		chunk := w.buf
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		m, err := io.ReadFull(r, chunk)
		if m > 0 {
			if _, werr := w.tw.Write(chunk[:m]); werr != nil {
				return werr
			}
			if w.inputs != nil {
				w.inputHash.Write(chunk[:m])
			}
			if w.cur != nil {
				_, _ = w.cur.Write(chunk[:m])
			}
			n -= int64(m)
		}
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// close finishes the tar and compressed streams and returns the digests.
func (w *layerWriter) close() (diffID, digest v1.Hash, size int64, err error) {
	if err := w.tw.Close(); err != nil {
		return v1.Hash{}, v1.Hash{}, 0, fmt.Errorf("finishing the tar stream: %w", err)
	}
	if err := w.comp.Close(); err != nil {
		return v1.Hash{}, v1.Hash{}, 0, err
	}
	// The disk starts on the last bytes too, so that the fsync before the
	// layer enters the layout has less to wait for.
	if s := w.sink; s.writeback != nil && s.n > s.synced {
		s.writeback(s.synced, s.n-s.synced)
		s.synced = s.n
	}
	diffID = sha256Hash(w.diff)
	digest = sha256Hash(w.sink.h)
	return diffID, digest, w.sink.n, nil
}

// abort stops the compressor's goroutines without writing anything more.
func (w *layerWriter) abort() {
	w.sink.aborted.Store(true)
	// stop waits for the compressor's goroutines.
	_ = w.comp.stop()
}

func sha256Hash(h hash.Hash) v1.Hash {
	var sum [sha256.Size]byte
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(sum[:0]))}
}

// errLayerAborted is what the compressor sees once a build has failed.
var errLayerAborted = errors.New("layer build aborted")

// writebackSize is how much of a layer file is written before the
// kernel is asked to start writing it to disk (see fileWriteback).
const writebackSize = 8 << 20

// layerSink receives the compressed stream: it writes it to the file,
// hashes it and counts it. The compressor calls Write from one goroutine.
type layerSink struct {
	f       *os.File
	h       hash.Hash
	n       int64
	aborted atomic.Bool
	// writeback, when not nil, starts writing bytes [off, off+n) of f to
	// disk without waiting; it is called for every writebackSize bytes.
	writeback func(off, n int64)
	// synced is the offset writeback has been called up to.
	synced int64
}

func (s *layerSink) Write(p []byte) (int, error) {
	if s.aborted.Load() {
		return 0, errLayerAborted
	}
	n, err := s.f.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	if s.writeback != nil && s.n-s.synced >= writebackSize {
		s.writeback(s.synced, s.n-s.synced)
		s.synced = s.n
	}
	return n, err
}

// layerReader reads an input, stopping when ctx is done and reporting
// every byte read to step.
type layerReader struct {
	ctx  context.Context
	r    io.Reader
	step progress.Step
}

func (r *layerReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if n > 0 {
		r.step.Add(int64(n))
	}
	return n, err
}

// fileLayer is a compressed layer on disk whose digests are known; it
// implements partial.CompressedLayer and partial.WithDiffID.
type fileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mediaType      types.MediaType
}

// Digest implements partial.CompressedLayer.
func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID implements partial.WithDiffID.
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Size implements partial.CompressedLayer.
func (l *fileLayer) Size() (int64, error) { return l.size, nil }

// MediaType implements partial.CompressedLayer.
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// Compressed implements partial.CompressedLayer.
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("opening layer file: %w", err)
	}
	return f, nil
}
