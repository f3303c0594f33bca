package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// treeFormat is bumped whenever the generator changes, so that a cached tree
// made by an older generator is regenerated instead of silently reused.
const treeFormat = 2

const (
	blobCount = 40
	blobSize  = 5 << 19 // 2.5 MiB of incompressible random bytes each
	textCount = 2000
	textSize  = 50 << 10 // 50 KiB of word-like text each
)

// Text generator tuning, chosen for a gzip -6 ratio near 4x (changing any of
// these needs a treeFormat bump).
const (
	vocabSize = 1024
	zipfS     = 1.2
	repeatP   = 0.4
)

// blobDirs and textDirs are the subdirectories of the tree the files are spread over.
var (
	blobDirs = []string{"blobs/assets", "blobs/vendor"}
	textDirs = []string{"src/cmd", "src/internal/core", "src/internal/util", "src/pkg/api", "src/pkg/store", "docs"}
)

// treeStamp records what was generated in the work directory. A tree is reused
// only when the stamp matches the requested seed and generator format and the
// files on disk still add up to what the stamp says.
type treeStamp struct {
	Format   int   `json:"format"`
	Seed     int64 `json:"seed"`
	Files    int   `json:"files"`
	Bytes    int64 `json:"bytes"`
	TarBytes int64 `json:"tar_bytes"`
	// TextGzipRatio is uncompressed/gzip(-6) size over the first text file, to
	// show the text is compressible like source code.
	TextGzipRatio float64 `json:"text_gzip_ratio"`
}

// benchTree is the input tree and its tarball, ready for measuring.
type benchTree struct {
	Dir     string // workdir/tree
	Tar     string // workdir/tree.tar, the same files laid out under data/
	Stamp   treeStamp
	Reused  bool
	GenTime time.Duration
}

// prepareTree returns the input tree in workdir for seed, generating it (and its
// tarball) only when no matching one is there already.
func prepareTree(workdir string, seed int64) (*benchTree, error) {
	t := &benchTree{
		Dir: filepath.Join(workdir, "tree"),
		Tar: filepath.Join(workdir, "tree.tar"),
	}
	stampPath := filepath.Join(workdir, "tree.json")
	if st, ok := readStamp(stampPath); ok && st.Format == treeFormat && st.Seed == seed {
		if files, bytes, err := treeSize(t.Dir); err == nil && files == st.Files && bytes == st.Bytes {
			if fi, err := os.Stat(t.Tar); err == nil && fi.Size() == st.TarBytes {
				t.Stamp, t.Reused = st, true
				return t, nil
			}
		}
	}

	start := time.Now()
	// Remove the stamp first: an interrupted generation must not look complete.
	for _, p := range []string{stampPath, t.Dir, t.Tar} {
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("removing stale %s: %w", p, err)
		}
	}
	ratio, err := generateTree(t.Dir, seed)
	if err != nil {
		return nil, fmt.Errorf("generating input tree in %s: %w", t.Dir, err)
	}
	if err := writeTreeTar(t.Dir, t.Tar, "data"); err != nil {
		return nil, fmt.Errorf("writing %s: %w", t.Tar, err)
	}
	files, size, err := treeSize(t.Dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(t.Tar)
	if err != nil {
		return nil, err
	}
	t.Stamp = treeStamp{Format: treeFormat, Seed: seed, Files: files, Bytes: size, TarBytes: fi.Size(), TextGzipRatio: ratio}
	b, _ := json.MarshalIndent(t.Stamp, "", "  ")
	if err := writeFileAtomic(stampPath, append(b, '\n')); err != nil {
		return nil, err
	}
	t.GenTime = time.Since(start)
	return t, nil
}

func readStamp(p string) (treeStamp, bool) {
	var st treeStamp
	b, err := os.ReadFile(p)
	if err != nil {
		return st, false
	}
	return st, json.Unmarshal(b, &st) == nil
}

// treeSize counts the regular files under dir and their total size.
func treeSize(dir string) (files int, size int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		size += fi.Size()
		return nil
	})
	return files, size, err
}

// generateTree writes the deterministic input tree for seed under dir and
// returns the gzip ratio of the first text file.
func generateTree(dir string, seed int64) (float64, error) {
	rng := rand.New(rand.NewSource(seed))
	for _, d := range append(append([]string{}, blobDirs...), textDirs...) {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(d)), 0o755); err != nil {
			return 0, err
		}
	}

	buf := make([]byte, blobSize)
	for i := range blobCount {
		for j := 0; j < len(buf); j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], rng.Uint64())
		}
		name := filepath.Join(dir, filepath.FromSlash(blobDirs[i%len(blobDirs)]), fmt.Sprintf("blob-%02d.bin", i))
		if err := os.WriteFile(name, buf, 0o644); err != nil {
			return 0, err
		}
	}

	words := newWordSource(rng)
	var ratio float64
	text := make([]byte, 0, textSize+256)
	for i := range textCount {
		text = words.fill(text[:0], textSize)
		if i == 0 {
			ratio = gzipRatio(text)
		}
		name := filepath.Join(dir, filepath.FromSlash(textDirs[i%len(textDirs)]), fmt.Sprintf("file-%04d.txt", i))
		if err := os.WriteFile(name, text, 0o644); err != nil {
			return 0, err
		}
	}
	return ratio, nil
}

// wordSource produces source-code-like lines: indentation and tokens drawn
// with a Zipf distribution from a fixed vocabulary, with some lines repeating
// recent ones, so that gzip compresses the result several-fold (about 4x at
// level 6), like real text and source files.
type wordSource struct {
	rng    *rand.Rand
	vocab  []string
	zipf   *rand.Zipf
	recent [][]byte // ring of recently produced lines
	next   int
}

func newWordSource(rng *rand.Rand) *wordSource {
	vocab := []string{
		"func", "return", "if", "err", "!=", "nil", "{", "}", "(", ")", ":=", "=", "for", "range",
		"var", "const", "type", "struct", "string", "int", "error", "package", "import", "//",
		"the", "of", "and", "to", "a", "in", "is", "that", "with", "for", "as", "on", "this",
	}
	const letters = "abcdefghijklmnopqrstuvwxyz"
	for len(vocab) < vocabSize {
		n := 2 + rng.Intn(6) + rng.Intn(6)
		w := make([]byte, n)
		for i := range w {
			w[i] = letters[rng.Intn(len(letters))]
		}
		vocab = append(vocab, string(w))
	}
	return &wordSource{
		rng:    rng,
		vocab:  vocab,
		zipf:   rand.NewZipf(rng, zipfS, 2, uint64(len(vocab)-1)),
		recent: make([][]byte, 64),
	}
}

// fill appends lines to dst until it is exactly size bytes long and ends in a newline.
func (w *wordSource) fill(dst []byte, size int) []byte {
	for len(dst) < size {
		if old := w.recent[w.rng.Intn(len(w.recent))]; old != nil && w.rng.Float64() < repeatP {
			dst = append(dst, old...)
			continue
		}
		start := len(dst)
		dst = append(dst, "\t\t\t\t"[:w.rng.Intn(4)]...)
		n := 2 + w.rng.Intn(10)
		for i := range n {
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = append(dst, w.vocab[w.zipf.Uint64()]...)
		}
		dst = append(dst, '\n')
		w.recent[w.next] = append(w.recent[w.next][:0], dst[start:]...)
		w.next = (w.next + 1) % len(w.recent)
	}
	dst = dst[:size]
	dst[size-1] = '\n'
	return dst
}

func gzipRatio(b []byte) float64 {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return float64(len(b)) / float64(out.Len())
}

// writeTreeTar writes an uncompressed tar of dir with every entry under prefix/,
// in lexical order, with fixed ownership and times.
func writeTreeTar(dir, dst, prefix string) error {
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	mtime := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: prefix + "/", Mode: 0o755, ModTime: mtime}); err != nil {
		f.Close()
		return err
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: mtime})
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: fi.Size(), ModTime: mtime}); err != nil {
				return err
			}
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			return err
		default:
			return fmt.Errorf("unexpected file type at %s", p)
		}
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func writeFileAtomic(p string, b []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// treeFiles lists the regular files under dir as slash-separated paths relative to dir.
func treeFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err == nil && len(out) == 0 {
		err = errors.New("input tree is empty")
	}
	return out, err
}

// cleanEntryName normalizes a tar entry name ("./data/x", "/data/x") to "data/x".
func cleanEntryName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}
