package oci

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bakery-sh/bakery/bake/bakekey"
	"github.com/bakery-sh/bakery/recipes"
	"github.com/zeebo/blake3"
)

// layerFormat names how BuildLayer lays out a layer's tar stream. It is
// part of every bake key: change it whenever a change in this package
// changes the bytes of a layer built from the same inputs, so that keys
// of images baked the old way stop matching. How the stream is compressed
// is the key's "oci.compression" part (compressionFormat).
const layerFormat = "bakery-layer/v2 tar=pax order=bytes"

// keptFolders names how a layer writes a folder that already exists
// below it (in the base or an earlier layer): with that folder's mode,
// owner, times and extended attributes. It is part of every bake key.
const keptFolders = "kept/v1"

// inputBufSize is the read buffer of each HashInputs worker: large enough
// that system calls cost nothing next to hashing, small enough that one
// per core stays cheap on machines with many cores.
const inputBufSize = 256 << 10

// layerEntry is one tar entry of a layer built from a file or a folder,
// already normalised: everything BuildLayer writes for it except the
// content, which it reads from src.
type layerEntry struct {
	name     string // tar name: relative, "/"-separated; a directory ends in "/"
	typ      byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode     int64  // permission bits
	uid, gid int
	link     string // symlink target, as found
	size     int64  // content size of a regular file
	src      string // file the content is read from (regular files only)
	// kept is set on a folder that already exists below the layer: it
	// is written with that folder's metadata instead (see keptDirs).
	kept *dirMeta
}

// layerOwner returns the uid and gid of every entry the layer owns.
func layerOwner(l *recipes.Layer) (uid, gid int) {
	if l.UID != nil {
		uid = *l.UID
	}
	if l.GID != nil {
		gid = *l.GID
	}
	return uid, gid
}

// layerFileMode is the mode of a regular file whose permission bits on
// disk (or in a tarball) are perm: the layer's mode when set, otherwise
// 0755 if any execute bit is set and 0644 if not, so that checkouts made
// under different umasks give the same layer.
func layerFileMode(l *recipes.Layer, perm int64) int64 {
	if l.Mode != nil {
		return int64(*l.Mode & 0o7777)
	}
	if perm&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// layerDestination returns the layer's destination cleaned and without
// its leading "/" ("" for the image root), and whether it was written
// with a trailing "/".
func layerDestination(l *recipes.Layer) (dst string, isDir bool, err error) {
	d := l.Destination
	if !strings.HasPrefix(d, "/") {
		return "", false, fmt.Errorf("layer %s: destination %q is not absolute: write a path inside the image starting with \"/\", like \"/app/\"", l.Source, d)
	}
	isDir = strings.HasSuffix(d, "/")
	return strings.TrimPrefix(path.Clean(d), "/"), isDir, nil
}

// layerParents returns directory entries for dir ("a/b/c", "" for the
// root) and each of its ancestors, outermost first, owned by the
// layer's uid and gid, mode 0755. Those that already exist below the
// layer are written with the metadata they have there instead (see
// keptDirs): a layer never changes a folder the base has.
func layerParents(dir string, uid, gid int) []layerEntry {
	if dir == "" {
		return nil
	}
	var es []layerEntry
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		es = append(es, layerEntry{name: dir[:i] + "/", typ: tar.TypeDir, mode: 0o755, uid: uid, gid: gid})
	}
	return es
}

// joinName joins a destination folder ("" for the root) and a relative
// "/"-separated name.
func joinName(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// layerEntries lists the entries of a file or folder layer in the order
// BuildLayer writes them: sorted by tar name in byte order, which puts
// every directory before its contents.
func layerEntries(ctx context.Context, l *recipes.Layer) ([]layerEntry, error) {
	dst, dstIsDir, err := layerDestination(l)
	if err != nil {
		return nil, err
	}
	uid, gid := layerOwner(l)
	fi, err := os.Stat(l.Path)
	if err != nil {
		return nil, fmt.Errorf("reading layer source %s: %w; check the source path in the recipe", l.Source, err)
	}
	var es []layerEntry
	switch l.Kind {
	case recipes.SourceFile:
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("reading layer source %s: %s is %s, not a regular file; write a folder source with a trailing \"/\"", l.Source, l.Path, describeMode(fi.Mode()))
		}
		var name string
		if dstIsDir {
			// Into the destination folder, by base name.
			name = joinName(dst, filepath.Base(l.Path))
			es = layerParents(dst, uid, gid)
		} else {
			// At the destination exactly: its folders are all ancestors.
			name = dst
			if dir := path.Dir(dst); dir != "." {
				es = layerParents(dir, uid, gid)
			}
		}
		es = append(es, layerEntry{
			name: name, typ: tar.TypeReg, mode: layerFileMode(l, int64(fi.Mode().Perm())),
			uid: uid, gid: gid, size: fi.Size(), src: l.Path,
		})
	case recipes.SourceDir:
		if !fi.IsDir() {
			return nil, fmt.Errorf("reading layer source %s: %s is not a folder; write a file source without a trailing \"/\"", l.Source, l.Path)
		}
		es = layerParents(dst, uid, gid)
		walked, err := walkLayerDir(ctx, l, dst, uid, gid)
		if err != nil {
			return nil, err
		}
		es = append(es, walked...)
	default:
		return nil, fmt.Errorf("layer %s: kind %q has no entry list", l.Source, l.Kind)
	}
	slices.SortFunc(es, func(a, b layerEntry) int { return strings.Compare(a.name, b.name) })
	return es, nil
}

// walkLayerDir lists everything under the layer's source folder, placed
// under dst. Symlinks are not followed, except the source itself. The
// caller sorts the entries.
//
// Listing stats every file, and nothing else of the bake can start
// before it ends: a few goroutines read the folders at once, each
// listing a subfolder itself when no other goroutine is free. Of several
// errors, the one at the first path in byte order is reported, whatever
// the goroutines' timing.
func walkLayerDir(ctx context.Context, l *recipes.Layer, dst string, uid, gid int) ([]layerEntry, error) {
	root := l.Path
	if fi, err := os.Lstat(root); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if root, err = filepath.EvalSymlinks(root); err != nil {
			return nil, fmt.Errorf("reading layer source %s: %w", l.Source, err)
		}
	}
	w := &dirWalker{ctx: ctx, l: l, dst: dst, uid: uid, gid: gid, sem: make(chan struct{}, walkGoroutines)}
	w.wg.Add(1)
	w.walk(root, "")
	w.wg.Wait()
	if w.err != nil {
		return nil, w.err
	}
	return w.entries, nil
}

// walkGoroutines bounds the goroutines listing a layer's folders, besides
// the one that started the walk.
const walkGoroutines = 3

// dirWalker lists a layer's source folder (see walkLayerDir).
type dirWalker struct {
	ctx      context.Context
	l        *recipes.Layer
	dst      string
	uid, gid int
	sem      chan struct{} // a token for each goroutine walking a subfolder
	wg       sync.WaitGroup

	mu      sync.Mutex
	entries []layerEntry
	err     error
	errPath string
}

// walk lists the folder dir, at rel (slash-separated, "" for the source
// itself) under the source, and everything below it.
func (w *dirWalker) walk(dir, rel string) {
	defer w.wg.Done()
	if err := w.ctx.Err(); err != nil {
		w.fail(dir, fmt.Errorf("reading layer source %s: %w", w.l.Source, err))
		return
	}
	ds, err := os.ReadDir(dir)
	if err != nil {
		w.fail(dir, fmt.Errorf("reading layer source %s: %w", w.l.Source, err))
		return
	}
	sep := string(filepath.Separator)
	if strings.HasSuffix(dir, sep) {
		sep = ""
	}
	es := make([]layerEntry, 0, len(ds))
	for i, d := range ds {
		if i%256 == 255 {
			// A folder of many files stops soon after an interrupt too.
			if err := w.ctx.Err(); err != nil {
				w.fail(dir, fmt.Errorf("reading layer source %s: %w", w.l.Source, err))
				return
			}
		}
		p := dir + sep + d.Name()
		r := d.Name()
		if rel != "" {
			r = rel + "/" + r
		}
		e, err := w.entry(p, r, d)
		if err != nil {
			w.fail(p, err)
			return
		}
		es = append(es, e)
		if e.typ != tar.TypeDir {
			continue
		}
		w.wg.Add(1)
		select {
		case w.sem <- struct{}{}:
			go func() {
				defer func() { <-w.sem }()
				w.walk(p, r)
			}()
		default:
			w.walk(p, r)
		}
	}
	w.mu.Lock()
	w.entries = append(w.entries, es...)
	w.mu.Unlock()
}

// fail records err at path p, keeping the error of the first path in
// byte order. The other folders are still listed: one of them may hold an
// earlier path that fails too.
func (w *dirWalker) fail(p string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil || p < w.errPath {
		w.err, w.errPath = err, p
	}
}

// entry is the layer entry of d, found at p, at rel under the source.
func (w *dirWalker) entry(p, rel string, d fs.DirEntry) (layerEntry, error) {
	l, uid, gid := w.l, w.uid, w.gid
	name := joinName(w.dst, rel)
	switch t := d.Type(); {
	case t.IsDir():
		return layerEntry{name: name + "/", typ: tar.TypeDir, mode: 0o755, uid: uid, gid: gid}, nil
	case t&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return layerEntry{}, fmt.Errorf("reading layer source %s: %w", l.Source, err)
		}
		return layerEntry{name: name, typ: tar.TypeSymlink, mode: 0o777, uid: uid, gid: gid, link: filepath.ToSlash(target)}, nil
	case t.IsRegular():
		fi, err := d.Info()
		if err != nil {
			return layerEntry{}, fmt.Errorf("reading layer source %s: %w", l.Source, err)
		}
		// A hard link is written as another regular file.
		return layerEntry{
			name: name, typ: tar.TypeReg, mode: layerFileMode(l, int64(fi.Mode().Perm())),
			uid: uid, gid: gid, size: fi.Size(), src: p,
		}, nil
	default:
		return layerEntry{}, fmt.Errorf("reading layer source %s: %s is %s: a layer holds only regular files, folders and symlinks; remove it from the source folder", l.Source, p, describeMode(t))
	}
}

// describeMode names a file type for error messages.
func describeMode(m fs.FileMode) string { return recipes.DescribeFileMode(m) }

// inputJob is one file to hash.
type inputJob struct {
	path string
	name string // how errors name it
	size int64  // expected size
	sum  [inputSumSize]byte
}

// inputSumSize is the size of an input file's content hash.
const inputSumSize = 32

// newInputHash returns the hash of input file contents in the bake key:
// BLAKE3, a cryptographic hash (collision resistance as SHA-256's) that
// runs several times faster on CPUs without SHA instructions, which
// matters because a no-op bake is nothing but this hash and a full bake
// hashes every input once more for the layer's diff ID and digest (which
// the OCI format fixes as SHA-256).
func newInputHash() hash.Hash { return blake3.New() }

// HashInputs adds to k everything that decides the bytes of the given
// layers, so that equal keys mean equal layers: for each layer its kind,
// destination, mode, uid and gid, then for a file or folder source each
// entry in the order BuildLayer writes it (in-image path, type,
// normalised mode, uid, gid, symlink target, size and the BLAKE3 hash of
// its content), and for a tarball source the size and BLAKE3 hash of the
// archive (see newInputHash).
// File times, the absolute path of the source and permission bits that
// normalisation drops do not change the key. Neither does the layer
// epoch: callers add it themselves.
//
// File contents are hashed in parallel, up to runtime.GOMAXPROCS files
// at once, and added to k in a fixed order. HashInputs reads every input
// byte once; it is the whole cost of a bake that finds nothing to do.
func HashInputs(ctx context.Context, layers []*recipes.Layer, k *bakekey.Hasher) error {
	_, err := hashInputs(ctx, layers, k, runtime.GOMAXPROCS(0))
	return err
}

// inputSums are the content hashes (see newInputHash) of one layer's
// inputs: by source file path for a file or folder source, and under ""
// the archive's for a tarball source. The SBOM's digest cache is keyed
// by them, and the provenance lists them.
type inputSums map[string][inputSumSize]byte

// sumsOf returns the input sums of plans, whose jobs' sums are computed.
func sumsOf(plans []inputPlan) []inputSums {
	sums := make([]inputSums, len(plans))
	for i, p := range plans {
		sums[i] = inputSums{}
		for _, j := range p.jobs {
			if p.l != nil && p.l.Kind == recipes.SourceTarball {
				sums[i][""] = j.sum
			} else {
				sums[i][j.path] = j.sum
			}
		}
	}
	return sums
}

// hashInputs is HashInputs with workers files hashed at once; it also
// returns each layer's input sums.
func hashInputs(ctx context.Context, layers []*recipes.Layer, k *bakekey.Hasher, workers int) ([]inputSums, error) {
	plans, err := hashPlans(ctx, layers, workers, func(*recipes.Layer) bool { return true })
	if err != nil {
		return nil, err
	}
	addInputs(k, plans)
	return sumsOf(plans), nil
}

// hashPlans lists the inputs of every layer that pick selects and hashes
// them, up to workers files at once; the result has one plan per layer,
// empty for the layers pick leaves out.
func hashPlans(ctx context.Context, layers []*recipes.Layer, workers int, pick func(*recipes.Layer) bool) ([]inputPlan, error) {
	plans := make([]inputPlan, len(layers))
	var jobs []inputJob
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("hashing layer inputs: %w", err)
		}
		if !pick(l) {
			continue
		}
		p, err := listInputs(ctx, l)
		if err != nil {
			return nil, err
		}
		plans[i] = p
		jobs = append(jobs, p.jobs...)
	}
	if err := hashInputJobs(ctx, jobs, workers); err != nil {
		return nil, err
	}
	for i := range plans {
		n := len(plans[i].jobs)
		plans[i].jobs, jobs = jobs[:n], jobs[n:]
	}
	return plans, nil
}

// inputPlan is what the bake key holds of one layer: for a file or
// folder source its entries in the order BuildLayer writes them and a
// job for each regular file, in entry order; for a tarball source one
// job, the archive.
type inputPlan struct {
	l       *recipes.Layer
	entries []layerEntry
	jobs    []inputJob
}

// listInputs lists what the bake key holds of layer l; the jobs' sums
// are still to be computed.
func listInputs(ctx context.Context, l *recipes.Layer) (inputPlan, error) {
	p := inputPlan{l: l}
	switch l.Kind {
	case recipes.SourceTarball:
		j, err := tarballInput(l)
		if err != nil {
			return inputPlan{}, err
		}
		p.jobs = []inputJob{j}
	case recipes.SourceFile, recipes.SourceDir:
		es, err := layerEntries(ctx, l)
		if err != nil {
			return inputPlan{}, err
		}
		p.entries = es
		for _, e := range es {
			if e.typ == tar.TypeReg {
				p.jobs = append(p.jobs, inputJob{path: e.src, name: e.src, size: e.size})
			}
		}
	default:
		return inputPlan{}, fmt.Errorf("layer %s: unknown source kind %q: use file, dir or tarball", l.Source, l.Kind)
	}
	return p, nil
}

// tarballInput is the job that hashes the archive of tarball layer l.
func tarballInput(l *recipes.Layer) (inputJob, error) {
	if _, _, err := layerDestination(l); err != nil {
		return inputJob{}, err
	}
	fi, err := os.Stat(l.Path)
	if err != nil {
		return inputJob{}, fmt.Errorf("reading layer source %s: %w; check the source path in the recipe", l.Source, err)
	}
	if !fi.Mode().IsRegular() {
		return inputJob{}, fmt.Errorf("reading layer source %s: %s is %s, not a tar archive", l.Source, l.Path, describeMode(fi.Mode()))
	}
	return inputJob{path: l.Path, name: l.Source, size: fi.Size()}, nil
}

// addInputs adds plans, whose jobs' sums are computed, to k (see
// HashInputs for what that is). It is the one place that decides the
// inputs' part of a bake key, whether the inputs were hashed before the
// bake (HashInputs) or while the layers were built (see Baker.Build).
func addInputs(k *bakekey.Hasher, plans []inputPlan) {
	k.AddString("oci.layer-format", layerFormat)
	// A folder that exists below a layer is written with the metadata it
	// has there, so layer bytes also depend on the base, whose digest is
	// in the key, and on the earlier layers, hashed here. Bakes made
	// before this rule wrote such folders as root:root 0755.
	k.AddString("oci.existing-folders", keptFolders)
	var buf []byte
	for _, p := range plans {
		l := p.l
		uid, gid := layerOwner(l)
		mode := int64(-1)
		if l.Mode != nil {
			mode = int64(*l.Mode)
		}
		buf = appendInputString(buf[:0], string(l.Kind))
		buf = appendInputString(buf, l.Destination)
		buf = binary.AppendVarint(buf, mode)
		buf = binary.AppendVarint(buf, int64(uid))
		buf = binary.AppendVarint(buf, int64(gid))
		k.Add("oci.layer", buf)
		if l.Kind == recipes.SourceTarball {
			j := &p.jobs[0]
			buf = binary.AppendVarint(buf[:0], j.size)
			buf = append(buf, j.sum[:]...)
			k.Add("oci.layer.tarball", buf)
			continue
		}
		reg := 0
		for _, e := range p.entries {
			buf = appendInputString(buf[:0], e.name)
			buf = append(buf, e.typ)
			buf = binary.AppendVarint(buf, e.mode)
			buf = binary.AppendVarint(buf, int64(e.uid))
			buf = binary.AppendVarint(buf, int64(e.gid))
			buf = appendInputString(buf, e.link)
			buf = binary.AppendVarint(buf, e.size)
			if e.typ == tar.TypeReg {
				buf = append(buf, p.jobs[reg].sum[:]...)
				reg++
			}
			k.Add("oci.layer.entry", buf)
		}
	}
}

// appendInputString appends s prefixed by its length.
func appendInputString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// hashInputJobs fills in the sum of every job, hashing up to workers
// files at once, largest first so that one big file does not finish
// alone at the end.
func hashInputJobs(ctx context.Context, jobs []inputJob, workers int) error {
	if len(jobs) == 0 {
		return nil
	}
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return jobs[order[a]].size > jobs[order[b]].size })
	workers = max(1, min(workers, len(jobs)))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			buf := make([]byte, inputBufSize)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(order) || ctx.Err() != nil {
					return
				}
				if err := hashInputFile(ctx, &jobs[order[i]], buf); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hashing layer inputs: %w", err)
	}
	return nil
}

// hashInputFile computes j.sum, checking that the file still has the
// size it had when the layer was listed.
func hashInputFile(ctx context.Context, j *inputJob, buf []byte) error {
	f, err := openInput(j.path)
	if err != nil {
		return fmt.Errorf("hashing layer input %s: %w", j.name, err)
	}
	defer f.Close()
	h := newInputHash()
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("hashing layer input %s: %w", j.name, err)
		}
		m, err := f.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("hashing layer input %s: %w", j.name, err)
		}
	}
	if n != j.size {
		return errChanged(j.name)
	}
	h.Sum(j.sum[:0])
	return nil
}

// errChanged reports an input file that changed size while it was read.
func errChanged(name string) error {
	return fmt.Errorf("reading %s: the file changed size while bakery read it; bake again once nothing writes to the layer sources", name)
}
