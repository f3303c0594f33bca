package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/bakery-sh/bakery/recipes"
)

// testEpoch is the layer time the tests use.
var testEpoch = time.Unix(1700000000, 0)

// writeTestTree writes a small tree with every kind of entry a folder
// layer may hold, and returns its root.
func writeTestTree(t testing.TB, root string) string {
	t.Helper()
	files := map[string]struct {
		data string
		mode fs.FileMode
	}{
		"bin/run":                        {"#!/bin/sh\necho hi\n", 0o755},
		"bin/tool":                       {"tool", 0o700}, // owner-only exec: normalised to 0755
		"etc/app.conf":                   {"key = value\n", 0o644},
		"etc/secret.conf":                {"secret\n", 0o600}, // normalised to 0644
		"a-b":                            {"sorts before a/", 0o644},
		"a/x":                            {"in a", 0o644},
		"a/b/c/deep.txt":                 {"deep", 0o644},
		"data/big.bin":                   {string(testData(3<<20 + 12345)), 0o644}, // several gzip blocks
		"README":                         {"readme", 0o664},
		"unicode-é.txt":                  {"é", 0o644},
		strings.Repeat("long-name-", 12): {"a name longer than 100 bytes", 0o644},
	}
	for name, f := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin/run", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "etc/abs-link")); err != nil {
		t.Fatal(err)
	}
	// A hard link is written as a second regular file.
	if err := os.Link(filepath.Join(root, "etc/app.conf"), filepath.Join(root, "etc/hard.conf")); err != nil {
		t.Fatal(err)
	}
	return root
}

// testData returns n bytes of deterministic, moderately compressible data.
func testData(n int) []byte {
	words := []string{"bakery ", "layer ", "oven ", "bread ", "flour ", "yeast ", "\n", "0x", "{}"}
	r := rand.New(rand.NewPCG(1, uint64(n)))
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if r.IntN(4) == 0 {
			b = append(b, byte(r.IntN(256)))
			continue
		}
		b = append(b, words[r.IntN(len(words))]...)
	}
	return b[:n]
}

func dirLayer(path, dest string) *recipes.Layer {
	return &recipes.Layer{Source: "app/", Path: path, Kind: recipes.SourceDir, Destination: dest}
}

func ptr[T any](v T) *T { return &v }

// buildTest builds l in a fresh folder and fails the test on error.
func buildTest(t testing.TB, l *recipes.Layer, opts ...LayerOption) *Built {
	t.Helper()
	b, err := BuildLayer(context.Background(), l, t.TempDir(), testEpoch, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

// readLayer reads a layer file back with the standard library only.
func readLayer(t *testing.T, path string) []tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var es []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, tarEntry{h, data})
	}
	return es
}

func names(es []tarEntry) []string {
	var ns []string
	for _, e := range es {
		ns = append(ns, e.hdr.Name)
	}
	return ns
}

func entryByName(t *testing.T, es []tarEntry, name string) tarEntry {
	t.Helper()
	for _, e := range es {
		if e.hdr.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %q in %q", name, names(es))
	return tarEntry{}
}

// copyTree copies the regular files, folders and symlinks under src to dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// touchTree gives every entry a new mtime and turns 0644 files into 0664,
// as a checkout under another umask would.
func touchTree(t testing.TB, root string) {
	t.Helper()
	later := time.Now().Add(time.Hour)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		if info, _ := d.Info(); info.Mode().IsRegular() && info.Mode().Perm() == 0o644 {
			if err := os.Chmod(p, 0o664); err != nil {
				return err
			}
		}
		return os.Chtimes(p, later, later)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBuildLayerIsDeterministic(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	l := dirLayer(root, "/app/")
	first := buildTest(t, l)

	check := func(name string, b *Built) {
		t.Helper()
		if b.Digest != first.Digest || b.DiffID != first.DiffID || b.Size != first.Size {
			t.Errorf("%s: digest %s diffID %s size %d, want %s %s %d", name, b.Digest, b.DiffID, b.Size, first.Digest, first.DiffID, first.Size)
		}
	}
	check("second build", buildTest(t, l))
	check("one block at a time", buildTest(t, l, WithLayerConcurrency(1)))
	check("sixteen blocks at a time", buildTest(t, l, WithLayerConcurrency(16)))

	touchTree(t, root)
	check("after touch and chmod 0664", buildTest(t, l))

	moved := filepath.Join(t.TempDir(), "elsewhere", "checkout")
	copyTree(t, root, moved)
	check("copy at another path", buildTest(t, dirLayer(moved, "/app/")))

	link := filepath.Join(t.TempDir(), "link-to-tree")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	check("source reached through a symlink", buildTest(t, dirLayer(link, "/app/")))

	other := buildTest(t, dirLayer(root, "/srv/"))
	if other.DiffID == first.DiffID {
		t.Error("another destination gave the same diffID")
	}
}

func TestBuildLayerContent(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	l := dirLayer(root, "/opt/app/")
	l.UID, l.GID = ptr(1000), ptr(1001)
	b := buildTest(t, l)
	es := readLayer(t, b.Path)
	ns := names(es)

	if !sort.StringsAreSorted(ns) {
		t.Errorf("names not sorted: %q", ns)
	}
	if len(ns) < 2 || ns[0] != "opt/" || ns[1] != "opt/app/" {
		t.Fatalf("first entries %q, want opt/ then opt/app/", ns)
	}
	seen := map[string]bool{}
	for _, n := range ns {
		if strings.HasPrefix(n, "/") {
			t.Errorf("%q is absolute", n)
		}
		dir := n[:strings.LastIndex(strings.TrimSuffix(n, "/"), "/")+1]
		if dir != "" && !seen[dir] {
			t.Errorf("%q comes before its folder %q", n, dir)
		}
		seen[n] = true
	}
	wantMode := map[string]int64{
		"opt/":                    0o755,
		"opt/app/":                0o755,
		"opt/app/bin/":            0o755,
		"opt/app/bin/run":         0o755,
		"opt/app/bin/tool":        0o755,
		"opt/app/etc/app.conf":    0o644,
		"opt/app/etc/secret.conf": 0o644,
		"opt/app/etc/hard.conf":   0o644,
		"opt/app/README":          0o644,
		"opt/app/empty/":          0o755,
		"opt/app/link":            0o777,
		"opt/app/etc/abs-link":    0o777,
		"opt/app/data/big.bin":    0o644,
		"opt/app/a-b":             0o644,
		"opt/app/a/b/c/deep.txt":  0o644,
		"opt/app/unicode-é.txt":   0o644,
		"opt/app/" + strings.Repeat("long-name-", 12): 0o644,
	}
	for name, mode := range wantMode {
		if e := entryByName(t, es, name); e.hdr.Mode != mode {
			t.Errorf("%s: mode %o, want %o", name, e.hdr.Mode, mode)
		}
	}
	if i, j := indexOf(ns, "opt/app/a-b"), indexOf(ns, "opt/app/a/"); i > j {
		t.Errorf("a-b at %d after a/ at %d: want byte order", i, j)
	}
	for _, e := range es {
		h := e.hdr
		// Folders above the destination too: new ones take the layer's
		// owner (existing ones keep the base's, see layers11_test.go).
		wantUID, wantGID := 1000, 1001
		if h.Uid != wantUID || h.Gid != wantGID || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want %d:%d without names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, wantUID, wantGID)
		}
		if !h.ModTime.Equal(testEpoch) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v, want mtime %v only", h.Name, h.ModTime, h.AccessTime, h.ChangeTime, testEpoch)
		}
		if h.Devmajor != 0 || h.Devminor != 0 {
			t.Errorf("%s: device numbers set", h.Name)
		}
		for k := range h.PAXRecords {
			if k != "path" {
				t.Errorf("%s: unexpected PAX record %q", h.Name, k)
			}
		}
		if h.Typeflag == tar.TypeDir != strings.HasSuffix(h.Name, "/") {
			t.Errorf("%s: type %q, a folder name must end in /", h.Name, h.Typeflag)
		}
	}
	if e := entryByName(t, es, "opt/app/link"); e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "bin/run" {
		t.Errorf("link: type %q target %q, want symlink to bin/run", e.hdr.Typeflag, e.hdr.Linkname)
	}
	if e := entryByName(t, es, "opt/app/etc/abs-link"); e.hdr.Linkname != "/etc/passwd" {
		t.Errorf("abs-link: target %q, want /etc/passwd", e.hdr.Linkname)
	}
	if e := entryByName(t, es, "opt/app/etc/hard.conf"); e.hdr.Typeflag != tar.TypeReg || string(e.data) != "key = value\n" {
		t.Errorf("hard.conf: type %q content %q, want a regular copy", e.hdr.Typeflag, e.data)
	}
	if e := entryByName(t, es, "opt/app/data/big.bin"); !bytes.Equal(e.data, testData(3<<20+12345)) {
		t.Error("big.bin: content differs")
	}
}

func indexOf(ns []string, n string) int {
	for i, x := range ns {
		if x == n {
			return i
		}
	}
	return -1
}

func TestBuildLayerExplicitMode(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	l := dirLayer(root, "/")
	l.Mode = ptr(uint32(0o4750))
	es := readLayer(t, buildTest(t, l).Path)
	if es[0].hdr.Name != "README" {
		t.Errorf("destination / wrote %q first, want no folder entry before README", es[0].hdr.Name)
	}
	for _, e := range es {
		want := int64(0o4750)
		switch e.hdr.Typeflag {
		case tar.TypeDir:
			want = 0o755
		case tar.TypeSymlink:
			want = 0o777
		}
		if e.hdr.Mode != want {
			t.Errorf("%s: mode %o, want %o", e.hdr.Name, e.hdr.Mode, want)
		}
	}
}

func TestBuildLayerFilePlacement(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dest string
		uid  *int
		want []string // name uid mode
	}{
		{"/usr/local/bin/", ptr(7), []string{"usr/ 7 755", "usr/local/ 7 755", "usr/local/bin/ 7 755", "usr/local/bin/tool 7 755"}},
		{"/etc/renamed", ptr(7), []string{"etc/ 7 755", "etc/renamed 7 755"}},
		{"/top", nil, []string{"top 0 755"}},
		{"/", nil, []string{"tool 0 755"}},
	} {
		l := &recipes.Layer{Source: "tool", Path: src, Kind: recipes.SourceFile, Destination: tc.dest, UID: tc.uid}
		es := readLayer(t, buildTest(t, l).Path)
		var got []string
		for _, e := range es {
			got = append(got, fmt.Sprintf("%s %d %o", e.hdr.Name, e.hdr.Uid, e.hdr.Mode))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("destination %s: got %q, want %q", tc.dest, got, tc.want)
		}
		if string(es[len(es)-1].data) != "#!/bin/sh\n" {
			t.Errorf("destination %s: content %q", tc.dest, es[len(es)-1].data)
		}
	}
}

// testTarball writes an archive with the given headers; regular entries
// get testData(Size) as content when Size is set, else their name.
func testTarball(t *testing.T, path string, compress bool, hdrs ...*tar.Header) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		data := []byte(nil)
		if h.Typeflag == tar.TypeReg {
			data = []byte(h.Name)
			if h.Size > 0 {
				data = testData(int(h.Size))
			}
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if compress {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(out)
		zw.Close()
		out = z.Bytes()
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBuildLayerTarball(t *testing.T) {
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	hdrs := func() []*tar.Header {
		return []*tar.Header{
			{Name: "./", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: old},
			{Name: "./z/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 5, Uname: "bob", ModTime: old},
			{Name: "./z/run", Typeflag: tar.TypeReg, Mode: 0o700, Uid: 5, Gid: 6, Uname: "bob", Gname: "staff", ModTime: old, AccessTime: old, Format: tar.FormatPAX},
			{Name: "a.txt", Typeflag: tar.TypeReg, Mode: 0o666, ModTime: old, PAXRecords: map[string]string{"SCHILY.xattr.user.x": "y"}},
			{Name: "/abs.txt", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: old},
			{Name: "z/ln", Typeflag: tar.TypeSymlink, Linkname: "/usr/bin/env", ModTime: old},
			{Name: "z/hard", Typeflag: tar.TypeLink, Linkname: "./z/run", ModTime: old},
		}
	}
	want := []string{
		"srv/ 9 755 - 0", // the destination itself belongs to the layer's owner
		"srv/z/ 9 755 - 0",
		"srv/z/run 9 755 - 7",
		"srv/a.txt 9 644 - 5",
		"srv/abs.txt 9 644 - 8",
		"srv/z/ln 9 777 /usr/bin/env 0",
		"srv/z/hard 9 755 srv/z/run 0",
	}
	dir := t.TempDir()
	for _, name := range []string{"root.tar", "root.tar.gz", "root.tgz"} {
		p := filepath.Join(dir, name)
		testTarball(t, p, name != "root.tar", hdrs()...)
		l := &recipes.Layer{Source: name, Path: p, Kind: recipes.SourceTarball, Destination: "/srv", UID: ptr(9)}
		b := buildTest(t, l)
		es := readLayer(t, b.Path)
		var got []string
		for _, e := range es {
			h := e.hdr
			link := h.Linkname
			if link == "" {
				link = "-"
			}
			got = append(got, fmt.Sprintf("%s %d %o %s %d", h.Name, h.Uid, h.Mode, link, len(e.data)))
			if !h.ModTime.Equal(testEpoch) || !h.AccessTime.IsZero() || h.Uname != "" || h.Gname != "" || len(h.PAXRecords) > 0 {
				t.Errorf("%s %s: not normalised: %+v", name, h.Name, h)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
		if again := buildTest(t, l, WithLayerConcurrency(1)); again.Digest != b.Digest {
			t.Errorf("%s: second build has digest %s, want %s", name, again.Digest, b.Digest)
		}
	}
}

func TestBuildLayerTarballRejectsEscapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  *tar.Header
	}{
		{"dotdot", &tar.Header{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		{"dotdot-dir", &tar.Header{Name: "../", Typeflag: tar.TypeDir, Mode: 0o755}},
		{"hardlink-out", &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../etc/passwd"}},
		{"hardlink-absolute", &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}},
		{"fifo", &tar.Header{Name: "pipe", Typeflag: tar.TypeFifo, Mode: 0o644}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.tar.gz")
			testTarball(t, p, true, &tar.Header{Name: "ok", Typeflag: tar.TypeReg, Mode: 0o644}, tc.hdr)
			out := t.TempDir()
			l := &recipes.Layer{Source: "bad.tar.gz", Path: p, Kind: recipes.SourceTarball, Destination: "/srv/"}
			_, err := BuildLayer(context.Background(), l, out, testEpoch, nil)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.hdr.Name)) {
				t.Errorf("error %q does not name the entry %q", err, tc.hdr.Name)
			}
			assertEmpty(t, out)
		})
	}
}

func TestBuildLayerTarballTruncated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cut.tar")
	testTarball(t, p, false, &tar.Header{Name: "x", Size: 2000, Typeflag: tar.TypeReg, Mode: 0o644})
	b, _ := os.ReadFile(p)
	os.WriteFile(p, b[:700], 0o644)
	out := t.TempDir()
	l := &recipes.Layer{Source: "cut.tar", Path: p, Kind: recipes.SourceTarball, Destination: "/"}
	if _, err := BuildLayer(context.Background(), l, out, testEpoch, nil); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("error %v, want a truncated archive", err)
	}
	assertEmpty(t, out)
}

func TestBuildLayerDigests(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	b := buildTest(t, dirLayer(root, "/app/"))
	raw, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != b.Digest.String() {
		t.Errorf("digest %s, file hashes to %s", b.Digest, got)
	}
	if b.Size != int64(len(raw)) {
		t.Errorf("size %d, file has %d bytes", b.Size, len(raw))
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tarBytes, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(tarBytes)); got != b.DiffID.String() {
		t.Errorf("diffID %s, tar hashes to %s", b.DiffID, got)
	}
	if !bytes.Equal(raw[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("gzip header time %x, want 0", raw[4:8])
	}

	if err := validate.Layer(b.Layer()); err != nil {
		t.Errorf("validate.Layer: %v", err)
	}
	if mt, _ := b.Layer().MediaType(); mt != types.MediaType("application/vnd.oci.image.layer.v1.tar+gzip") {
		t.Errorf("media type %s", mt)
	}
	if d, _ := b.Layer().Digest(); d != b.Digest {
		t.Errorf("layer digest %s, want %s", d, b.Digest)
	}
	if d, _ := b.Layer().DiffID(); d != b.DiffID {
		t.Errorf("layer diffID %s, want %s", d, b.DiffID)
	}
	if s, _ := b.Layer().Size(); s != b.Size {
		t.Errorf("layer size %d, want %d", s, b.Size)
	}

	// The standard tools read it.
	for _, args := range [][]string{{"gzip", "-t", b.Path}, {"tar", "-tzvf", b.Path}} {
		if _, err := exec.LookPath(args[0]); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed", args[0])
			}
			t.Logf("skipping %s: not installed", args[0])
			continue
		}
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "tar" && !strings.Contains(string(out), "app/data/big.bin") {
			t.Errorf("tar -tzvf does not list app/data/big.bin:\n%s", out)
		}
	}
}

// recordStep is a progress.Step that records what it is told and can
// run a hook on the first Add.
type recordStep struct {
	mu          sync.Mutex
	total, done int64
	onAdd       func()
}

func (s *recordStep) SetTotal(n int64) { s.mu.Lock(); s.total = n; s.mu.Unlock() }
func (s *recordStep) Done(error)       {}
func (s *recordStep) Add(n int64) {
	s.mu.Lock()
	s.done += n
	hook := s.onAdd
	s.onAdd = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func TestBuildLayerProgress(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	var want int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if info, _ := d.Info(); info.Mode().IsRegular() {
			want += info.Size()
		}
		return nil
	})
	step := &recordStep{}
	if _, err := BuildLayer(context.Background(), dirLayer(root, "/app/"), t.TempDir(), testEpoch, step); err != nil {
		t.Fatal(err)
	}
	if step.total != want || step.done != want {
		t.Errorf("progress total %d done %d, want %d", step.total, step.done, want)
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("%s holds %v, want nothing left behind", dir, left)
	}
}

func TestBuildLayerCancel(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		out := t.TempDir()
		_, err := BuildLayer(ctx, dirLayer(root, "/app/"), out, testEpoch, nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		assertEmpty(t, out)
	})
	t.Run("while writing", func(t *testing.T) {
		for _, kind := range []recipes.SourceKind{recipes.SourceDir, recipes.SourceTarball} {
			l := dirLayer(root, "/app/")
			if kind == recipes.SourceTarball {
				p := filepath.Join(t.TempDir(), "big.tar")
				testTarball(t, p, false, &tar.Header{Name: "y", Size: 3 << 20, Typeflag: tar.TypeReg, Mode: 0o644})
				l = &recipes.Layer{Source: "big.tar", Path: p, Kind: recipes.SourceTarball, Destination: "/"}
			}
			ctx, cancel := context.WithCancel(context.Background())
			out := t.TempDir()
			_, err := BuildLayer(ctx, l, out, testEpoch, &recordStep{onAdd: cancel})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: error %v, want context.Canceled", kind, err)
			}
			assertEmpty(t, out)
		}
	})
}

func TestBuildLayerErrors(t *testing.T) {
	dir := t.TempDir()
	fifoTree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(fifoTree, "sub"), 0o755)
	os.WriteFile(filepath.Join(fifoTree, "a"), []byte("a"), 0o644)
	fifo := filepath.Join(fifoTree, "sub", "pipe")
	mkfifo(t, fifo)
	missing := filepath.Join(dir, "missing")
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o644)

	for _, tc := range []struct {
		name string
		l    *recipes.Layer
		want []string
	}{
		{"missing folder", dirLayer(missing, "/app/"), []string{missing, "no such file"}},
		{"missing file", &recipes.Layer{Source: "missing", Path: missing, Kind: recipes.SourceFile, Destination: "/x"}, []string{missing}},
		{"missing tarball", &recipes.Layer{Source: "missing", Path: missing, Kind: recipes.SourceTarball, Destination: "/"}, []string{missing}},
		{"fifo in folder", dirLayer(fifoTree, "/app/"), []string{fifo, "named pipe"}},
		{"fifo as file", &recipes.Layer{Source: "pipe", Path: fifo, Kind: recipes.SourceFile, Destination: "/x"}, []string{fifo, "named pipe"}},
		{"file as folder", dirLayer(plain, "/app/"), []string{plain, "not a folder"}},
		{"relative destination", dirLayer(fifoTree, "app/"), []string{`"app/"`, "absolute"}},
		{"unknown kind", &recipes.Layer{Source: "x", Path: plain, Kind: "zip", Destination: "/"}, []string{`"zip"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			_, err := BuildLayer(context.Background(), tc.l, out, testEpoch, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			assertEmpty(t, out)
		})
	}
}

func TestBuildLayerConcurrently(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	out := t.TempDir()
	const n = 6
	built := make([]*Built, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b, err := BuildLayer(context.Background(), dirLayer(root, "/app/"), out, testEpoch, nil, WithLayerConcurrency(1+i%3))
			if err != nil {
				t.Error(err)
				return
			}
			built[i] = b
		})
	}
	wg.Wait()
	paths := map[string]bool{}
	for _, b := range built {
		if b == nil {
			t.FailNow()
		}
		if b.Digest != built[0].Digest {
			t.Errorf("digest %s, want %s", b.Digest, built[0].Digest)
		}
		paths[b.Path] = true
	}
	if len(paths) != n {
		t.Errorf("%d distinct files for %d layers", len(paths), n)
	}
}

// BenchmarkBuildLayer builds a generated ~50 MB tree of mixed file sizes.
func BenchmarkBuildLayer(b *testing.B) {
	root, size := benchTree(b)
	out := b.TempDir()
	l := dirLayer(root, "/app/")
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		built, err := BuildLayer(context.Background(), l, out, testEpoch, nil)
		if err != nil {
			b.Fatal(err)
		}
		os.Remove(built.Path)
	}
}

// benchTree writes (once per benchmark) a ~50 MB tree: 2000 small files,
// 200 of 100 KiB and four of 6 MiB.
func benchTree(b *testing.B) (string, int64) {
	b.Helper()
	root := b.TempDir()
	var total int64
	write := func(name string, n int) {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, testData(n), 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	for i := range 2000 {
		write(fmt.Sprintf("small/%02d/f%04d.txt", i%50, i), 1000+i*3)
	}
	for i := range 200 {
		write(fmt.Sprintf("medium/m%03d.bin", i), 100<<10+i)
	}
	for i := range 4 {
		write(fmt.Sprintf("large/l%d.bin", i), 6<<20+i)
	}
	return root, total
}
