package oci

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/sbom"
	"github.com/bakery-sh/bakery/recipes"
)

// dirMeta is the metadata of a folder that already exists under a
// layer: a layer that writes the folder again (as a parent of what it
// adds, or because its source has it) writes exactly this, so that it
// changes nothing the base had: not the sticky bit of /tmp, not the
// owner of a home folder.
type dirMeta struct {
	mode                int64 // permission and special bits
	uid, gid            int
	uname, gname        string
	mtime, atime, ctime time.Time
	xattrs              map[string]string // PAX records "SCHILY.xattr.*"
}

func (m *dirMeta) equal(o *dirMeta) bool {
	return m.mode == o.mode && m.uid == o.uid && m.gid == o.gid && m.uname == o.uname && m.gname == o.gname &&
		m.mtime.Equal(o.mtime) && m.atime.Equal(o.atime) && m.ctime.Equal(o.ctime) && maps.Equal(m.xattrs, o.xattrs)
}

// apply sets h's metadata to m.
func (m *dirMeta) apply(h *tar.Header) {
	h.Mode, h.Uid, h.Gid, h.Uname, h.Gname = m.mode, m.uid, m.gid, m.uname, m.gname
	h.ModTime, h.AccessTime, h.ChangeTime = m.mtime, m.atime, m.ctime
	if len(m.xattrs) > 0 {
		h.PAXRecords = maps.Clone(m.xattrs)
	}
}

// dirMetaOf returns the metadata of a folder entry.
func dirMetaOf(h *tar.Header) *dirMeta {
	m := &dirMeta{
		mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, uname: h.Uname, gname: h.Gname,
		mtime: h.ModTime, atime: h.AccessTime, ctime: h.ChangeTime,
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if m.xattrs == nil {
				m.xattrs = map[string]string{}
			}
			m.xattrs[k] = v
		}
	}
	return m
}

// keptDirs maps the tar name of each folder a layer writes that already
// exists under it ("tmp/", "home/app/") to that folder's metadata.
type keptDirs map[string]*dirMeta

func (k keptDirs) equal(o keptDirs) bool {
	return maps.EqualFunc(k, o, func(a, b *dirMeta) bool { return a.equal(b) })
}

// keep returns e with the metadata of the folder that already exists at
// its name, if e is a folder and one does.
func (k keptDirs) keep(e layerEntry) layerEntry {
	if e.typ == tar.TypeDir {
		if m, ok := k[e.name]; ok {
			e.kept = m
		}
	}
	return e
}

// lowerEntry is a folder or symlink of a lower filesystem.
type lowerEntry struct {
	dir  *dirMeta // a folder; nil for a symlink
	link string   // a symlink's target
}

// lowerFS is the filesystem a layer lands on, as far as the layer's
// folders care: every folder and symlink, by clean relative name
// ("tmp", "home/app"), with whiteouts applied. Files are not kept.
type lowerFS struct {
	entries map[string]lowerEntry
	// parents holds every folder that has held an entry, listed or
	// not: a whiteout of a name outside it has nothing under it to
	// remove, which spares a scan of entries.
	parents map[string]bool
	// pkgdb holds the content of the package databases the SBOM lists
	// (see sbom.IsPackageDB), by name.
	pkgdb map[string][]byte
}

func newLowerFS() *lowerFS {
	return &lowerFS{entries: map[string]lowerEntry{}, parents: map[string]bool{}, pkgdb: map[string][]byte{}}
}

// get returns the entry at name.
func (fs *lowerFS) get(name string) (lowerEntry, bool) {
	e, ok := fs.entries[name]
	return e, ok
}

// set puts e at name, over whatever was there.
func (fs *lowerFS) set(name string, e lowerEntry) {
	fs.entries[name] = e
	for d := path.Dir(name); d != "." && !fs.parents[d]; d = path.Dir(d) {
		fs.parents[d] = true
	}
}

// empty reports whether fs holds nothing.
func (fs *lowerFS) empty() bool { return len(fs.entries) == 0 }

// remove deletes name and everything under it.
func (fs *lowerFS) remove(name string) {
	delete(fs.entries, name)
	fs.removeUnder(name)
}

// applyDBs applies op to the package databases: an opaque folder
// removes those under it; a whiteout, symlink or file those at or under
// its name; a folder one at its name. A package database is then set.
func (fs *lowerFS) applyDBs(op lowerOp) {
	for n := range fs.pkgdb {
		under := op.name == "" || strings.HasPrefix(n, op.name+"/")
		if (op.kind == 'o' && under) || (op.kind != 'o' && op.kind != 'd' && under) || (op.kind != 'o' && n == op.name) {
			delete(fs.pkgdb, n)
		}
	}
	if op.data != nil {
		fs.pkgdb[op.name] = op.data
	}
}

// removeUnder deletes everything under the folder name ("" for the root).
func (fs *lowerFS) removeUnder(name string) {
	if name != "" && !fs.parents[name] {
		return
	}
	prefix := name + "/"
	if name == "" {
		prefix = ""
	}
	for n := range fs.entries {
		if strings.HasPrefix(n, prefix) {
			delete(fs.entries, n)
		}
	}
}

// lowerOp is one entry of a base layer that changes a lowerFS.
type lowerOp struct {
	kind byte // 'd' folder, 'l' symlink, 'f' anything else, 'w' whiteout, 'o' opaque folder
	name string
	dir  *dirMeta
	link string
	data []byte // the content of a package database (see sbom.IsPackageDB)
}

// apply applies op the way an unpacker applies a layer entry.
func (fs *lowerFS) apply(op lowerOp) {
	fs.applyDBs(op)
	switch op.kind {
	case 'o':
		fs.removeUnder(op.name)
	case 'w':
		fs.remove(op.name)
	case 'd':
		if e, ok := fs.get(op.name); ok && e.dir == nil {
			fs.remove(op.name) // a folder replaces a symlink
		}
		fs.set(op.name, lowerEntry{dir: op.dir})
	case 'l':
		fs.remove(op.name)
		fs.set(op.name, lowerEntry{link: op.link})
	default:
		fs.remove(op.name)
	}
}

// layerOps reads the tar stream of a base layer into the operations it
// applies to the filesystem below it.
func layerOps(ctx context.Context, l v1.Layer) ([]lowerOp, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(bufio.NewReaderSize(&layerReader{ctx: ctx, r: rc, step: progress.Discard().Step("")}, 256<<10))
	var ops []lowerOp
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return ops, nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, err
		}
		name := path.Clean(strings.TrimLeft(h.Name, "/"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") {
			continue // the root, or outside it: an unpacker ignores it
		}
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case base == ".wh..wh..opq":
			ops = append(ops, lowerOp{kind: 'o', name: dir})
		case strings.HasPrefix(base, ".wh."):
			ops = append(ops, lowerOp{kind: 'w', name: path.Join(dir, base[len(".wh."):])})
		case h.Typeflag == tar.TypeDir:
			ops = append(ops, lowerOp{kind: 'd', name: name, dir: dirMetaOf(h)})
		case h.Typeflag == tar.TypeSymlink:
			ops = append(ops, lowerOp{kind: 'l', name: name, link: h.Linkname})
		default:
			op := lowerOp{kind: 'f', name: name}
			if h.Typeflag == tar.TypeReg && h.Size <= maxPackageDB && sbom.IsPackageDB(name) {
				if op.data, err = io.ReadAll(tr); err != nil {
					return nil, err
				}
			}
			ops = append(ops, op)
		}
	}
}

// maxPackageDB is the largest package database the SBOM reads from a base.
const maxPackageDB = 64 << 20

// readLowerFS reads the folders and symlinks of img's flattened
// filesystem, reading up to jobs layers at once; layers already in
// cache (by digest) are not read again, and those read are added to it.
func readLowerFS(ctx context.Context, img v1.Image, jobs int, cache map[v1.Hash][]lowerOp) (*lowerFS, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing the base's layers: %w", err)
	}
	ops := make([][]lowerOp, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("reading the base's layer %d: %w", i+1, err)
		}
		if c, ok := cache[d]; ok {
			ops[i] = c
			continue
		}
		g.Go(func() error {
			o, err := layerOps(gctx, l)
			if err != nil {
				return fmt.Errorf("reading the base's layer %s: %w", d, err)
			}
			ops[i] = o
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	fs := newLowerFS()
	for i, l := range layers {
		if d, err := l.Digest(); err == nil {
			cache[d] = ops[i]
		}
		for _, op := range ops[i] {
			fs.apply(op)
		}
	}
	return fs, nil
}

// plannedEntries lists the entries a layer writes as far as a lower
// filesystem cares (names and types; folders and symlinks with what
// they will hold), without the kept metadata. For a tarball source this
// reads the archive's headers.
func plannedEntries(ctx context.Context, l *recipes.Layer) ([]layerEntry, error) {
	if l.Kind != recipes.SourceTarball {
		return layerEntries(ctx, l)
	}
	dst, _, err := layerDestination(l)
	if err != nil {
		return nil, err
	}
	uid, gid := layerOwner(l)
	es := layerParents(dst, uid, gid)
	archive, _, err := openTarball(l)
	if err != nil {
		return nil, err
	}
	defer archive.Close()
	br := bufio.NewReaderSize(&layerReader{ctx: ctx, r: archive, step: progress.Discard().Step("")}, layerBufSize)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading tarball %s: %w", l.Path, err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return es, nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, tarballError(l, err)
		}
		rel, err := tarballName(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("reading tarball %s: entry %q: %w", l.Path, hdr.Name, err)
		}
		if rel == "" {
			continue
		}
		e := layerEntry{name: joinName(dst, rel), uid: uid, gid: gid}
		switch hdr.Typeflag {
		case tar.TypeDir:
			e.typ, e.name, e.mode = tar.TypeDir, e.name+"/", 0o755
		case tar.TypeSymlink:
			e.typ, e.link = tar.TypeSymlink, hdr.Linkname
		default:
			e.typ = tar.TypeReg // BuildLayer reports the entries it refuses
		}
		es = append(es, e)
	}
}

// planKept returns the folders among es that exist in fs, with their
// metadata, then applies es to fs as the layer's own entries (its new
// folders owned as es says, at time epoch). A folder entry where fs has
// a symlink is an error: writing it would replace the symlink (a merged
// /usr's /bin or /lib) with a folder.
func planKept(l *recipes.Layer, es []layerEntry, fs *lowerFS, epoch time.Time) (keptDirs, error) {
	kept := keptDirs{}
	for _, e := range es {
		name := strings.TrimSuffix(e.name, "/")
		switch e.typ {
		case tar.TypeDir:
			if le, ok := fs.get(name); ok {
				if le.dir == nil {
					return nil, fmt.Errorf("layer %s → %s: /%s is a symlink to %s in the image below this layer, and the layer would replace it with a folder; write to the symlink's target instead", l.Source, l.Destination, name, le.link)
				}
				kept[e.name] = le.dir
				continue
			}
			fs.set(name, lowerEntry{dir: &dirMeta{mode: e.mode, uid: e.uid, gid: e.gid, mtime: layerTime(epoch)}})
		case tar.TypeSymlink:
			fs.remove(name)
			fs.set(name, lowerEntry{link: e.link})
		default:
			fs.remove(name)
		}
	}
	return kept, nil
}

// layerTime is the time BuildLayer writes into entries for epoch.
func layerTime(epoch time.Time) time.Time { return time.Unix(max(epoch.Unix(), 0), 0) }

// withKept makes BuildLayer write each folder named in kept with the
// metadata given there instead of its own. Default: none.
func withKept(kept keptDirs) LayerOption {
	return func(o *layerOptions) { o.kept = kept }
}
