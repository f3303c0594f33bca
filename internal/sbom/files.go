package sbom

import (
	"archive/tar"
	"bytes"
	"crypto/sha1" //nolint:gosec // SPDX 2.3 requires a SHA-1 for every file
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"hash"
	"io"
	"strings"
	"sync"
)

// maxBufferedBinary is the largest executable of a tarball source whose
// content a Recorder keeps in memory to read its Go build info (a file
// from disk is read again instead, only its build info section).
const maxBufferedBinary = 64 << 20

// FileDigest is what the SBOM records of a file's content.
type FileDigest struct {
	// SHA1 and SHA256 are lowercase hex digests of the content.
	SHA1   string `json:"sha1"`
	SHA256 string `json:"sha256"`
	// Go is the build info of a Go binary; nil for any other file.
	Go *GoBinary `json:"go,omitempty"`
}

// GoModule is a module built into a Go binary.
type GoModule struct {
	Path    string `json:"path"`
	Version string `json:"version,omitempty"`
	Sum     string `json:"sum,omitempty"`
}

// GoBinary is the build info of a Go binary (debug/buildinfo).
type GoBinary struct {
	GoVersion string     `json:"go_version"`
	Main      GoModule   `json:"main"`
	Deps      []GoModule `json:"deps,omitempty"`
}

// File is a regular file a layer holds.
type File struct {
	// Path is its name in the image, relative ("app/bin/server").
	Path string `json:"path"`
	// Size is its size in bytes; Mode its permission bits.
	Size int64 `json:"size"`
	Mode int64 `json:"mode"`
	FileDigest
}

// Recorder collects the regular files of one layer as the layer writer
// streams them: its Entry method is the writer's hook (see
// bake/oci.EntryObserver). The content it is given is copied and hashed
// (SHA-1 and SHA-256) by a goroutine of its own, so that hashing runs
// beside the layer writer instead of slowing it down. Files whose digests
// the cache holds are not hashed again. A Recorder is used by one layer
// build at a time; Files ends it.
type Recorder struct {
	key   func(name, src string) string
	cache *Cache
	files []File
	// links[i] is, for a hard link, the index of the file it links to.
	links  map[int]int
	byName map[string]int
	cur    *entry
	// hashed are the entries the goroutine hashes; their files are
	// copied into files once it is done.
	hashed []*entry

	jobs chan hashJob
	done chan struct{}
	over bool
}

// hashJob is content of e to hash, or with p nil the end of e.
type hashJob struct {
	e *entry
	p *[]byte
}

// chunkPool holds the copies of the content the hashing goroutine reads.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// NewRecorder returns a Recorder that looks digests up in cache (nil: no
// cache) under key(name, src), the content hash of the entry's input
// ("" when it has none: the entry is hashed).
func NewRecorder(cache *Cache, key func(name, src string) string) *Recorder {
	if key == nil {
		key = func(string, string) string { return "" }
	}
	return &Recorder{key: key, cache: cache, byName: map[string]int{}, links: map[int]int{}}
}

// Entry records the tar entry h, whose content is read from src ("" for
// an entry of a tarball), and returns where its content goes: nil when
// it is not a regular file or its digests are cached.
func (r *Recorder) Entry(h *tar.Header, src string) io.Writer {
	r.finish()
	switch h.Typeflag {
	case tar.TypeReg:
		f := File{Path: h.Name, Size: h.Size, Mode: h.Mode & 0o7777}
		key := r.key(h.Name, src)
		if key != "" {
			if d, ok := r.cache.Get(key); ok {
				f.FileDigest = d
				r.add(f)
				return nil
			}
		}
		r.start()
		r.cur = &entry{r: r, file: f, index: r.add(f), key: key, src: src, sha1: sha1.New(), sha256: sha256.New()} //nolint:gosec // see the import
		r.hashed = append(r.hashed, r.cur)
		return r.cur
	case tar.TypeLink:
		// A hard link of a tarball: the same content under another name.
		if i, ok := r.byName[h.Linkname]; ok {
			r.links[r.add(File{Path: h.Name, Size: r.files[i].Size, Mode: h.Mode & 0o7777})] = i
		}
	}
	return nil
}

// Files waits for the hashing to end and returns the regular files
// recorded, in the order written. The Recorder takes no more entries.
func (r *Recorder) Files() []File {
	if !r.over {
		r.over = true
		r.finish()
		if r.jobs != nil {
			close(r.jobs)
			<-r.done
		}
		for _, e := range r.hashed {
			r.files[e.index] = e.file
		}
		for i, target := range r.links {
			r.files[i].FileDigest = r.files[target].FileDigest
		}
	}
	return r.files
}

func (r *Recorder) add(f File) int {
	r.byName[f.Path] = len(r.files)
	r.files = append(r.files, f)
	return len(r.files) - 1
}

// start starts the hashing goroutine.
func (r *Recorder) start() {
	if r.jobs != nil {
		return
	}
	r.jobs, r.done = make(chan hashJob, 16), make(chan struct{})
	go func() {
		defer close(r.done)
		for j := range r.jobs {
			if j.p != nil {
				j.e.sha1.Write(*j.p)
				j.e.sha256.Write(*j.p)
				*j.p = (*j.p)[:0]
				chunkPool.Put(j.p)
				continue
			}
			r.complete(j.e)
		}
	}()
}

// finish ends the current entry, if any.
func (r *Recorder) finish() {
	if e := r.cur; e != nil {
		r.cur = nil
		r.jobs <- hashJob{e: e}
	}
}

// complete fills in the digests of e (on the hashing goroutine, which
// touches nothing but e and the cache).
func (r *Recorder) complete(e *entry) {
	f := &e.file
	f.SHA1 = hex.EncodeToString(e.sha1.Sum(nil))
	f.SHA256 = hex.EncodeToString(e.sha256.Sum(nil))
	if e.elf {
		f.Go = readGoBinary(e.src, e.buf)
	}
	if e.key != "" {
		r.cache.Put(e.key, f.FileDigest)
	}
}

// entry is a regular file being written.
type entry struct {
	r              *Recorder
	file           File
	index          int
	key, src       string
	sha1, sha256   hash.Hash
	n              int64
	elf, buffering bool
	buf            []byte
}

func (e *entry) Write(p []byte) (int, error) {
	if e.n == 0 && len(p) >= 4 && bytes.Equal(p[:4], []byte("\x7fELF")) {
		e.elf = true
		if e.src == "" && e.file.Size <= maxBufferedBinary {
			e.buffering = true
			e.buf = make([]byte, 0, e.file.Size)
		}
	}
	if e.buffering {
		e.buf = append(e.buf, p...)
	}
	e.n += int64(len(p))
	c := chunkPool.Get().(*[]byte)
	*c = append((*c)[:0], p...)
	e.r.jobs <- hashJob{e: e, p: c}
	return len(p), nil
}

// readGoBinary returns the Go build info of an ELF file, read from src
// or, for a file of a tarball, from its content; nil if it has none.
func readGoBinary(src string, content []byte) *GoBinary {
	var (
		bi  *buildinfo.BuildInfo
		err error
	)
	switch {
	case src != "":
		bi, err = buildinfo.ReadFile(src)
	case content != nil:
		bi, err = buildinfo.Read(bytes.NewReader(content))
	default:
		return nil
	}
	if err != nil || bi == nil {
		return nil
	}
	g := &GoBinary{GoVersion: bi.GoVersion, Main: GoModule{Path: bi.Main.Path, Version: bi.Main.Version, Sum: bi.Main.Sum}}
	if g.Main.Path == "" {
		g.Main.Path = bi.Path
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		g.Deps = append(g.Deps, GoModule{Path: d.Path, Version: d.Version, Sum: d.Sum})
	}
	return g
}

// isCacheKey reports whether k can be a cache key (no path separators,
// so a key never names a file).
func isCacheKey(k string) bool { return k != "" && !strings.ContainsAny(k, "\x00") }
