package sbom_test

import (
	"archive/tar"
	"crypto/sha1" //nolint:gosec // what SPDX needs
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/bakery-sh/bakery/internal/sbom"
)

func sums(b []byte) (string, string) {
	s1 := sha1.Sum(b) //nolint:gosec // see the import
	s2 := sha256.Sum256(b)
	return hex.EncodeToString(s1[:]), hex.EncodeToString(s2[:])
}

// stream feeds content to w in chunks of n bytes, as the layer writer does.
func stream(w interface{ Write([]byte) (int, error) }, content []byte, n int) {
	for len(content) > 0 {
		c := min(n, len(content))
		w.Write(content[:c])
		content = content[c:]
	}
}

func TestRecorderDigestsTheStreamedContent(t *testing.T) {
	r := sbom.NewRecorder(nil, nil)
	a, b := []byte("first file\n"), make([]byte, 3<<20+17)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if w := r.Entry(&tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755}, ""); w != nil {
		t.Error("a folder has content to hash")
	}
	stream(r.Entry(&tar.Header{Name: "app/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(a))}, "/src/a"), a, 4)
	stream(r.Entry(&tar.Header{Name: "app/b", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(b))}, ""), b, 1<<20)
	r.Entry(&tar.Header{Name: "app/empty", Typeflag: tar.TypeReg, Mode: 0o600}, "/src/empty")
	r.Entry(&tar.Header{Name: "app/link", Typeflag: tar.TypeSymlink, Linkname: "a"}, "")
	r.Entry(&tar.Header{Name: "app/hard", Typeflag: tar.TypeLink, Linkname: "app/b", Mode: 0o755}, "")
	files := r.Files()
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	if want := []string{"app/a", "app/b", "app/empty", "app/hard"}; !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	for i, content := range [][]byte{a, b, nil, b} {
		s1, s2 := sums(content)
		if f := files[i]; f.SHA1 != s1 || f.SHA256 != s2 || f.Size != int64(len(content)) {
			t.Errorf("%s: sha1 %s sha256 %s size %d, want %s %s %d", f.Path, f.SHA1, f.SHA256, f.Size, s1, s2, len(content))
		}
	}
	if files[1].Mode != 0o755 || files[0].Mode != 0o644 {
		t.Errorf("modes = %o, %o", files[0].Mode, files[1].Mode)
	}
}

func TestRecorderTakesCachedDigestsWithoutHashing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache", "digests.json")
	c := sbom.OpenCache(path)
	content := []byte("cached content")
	r := sbom.NewRecorder(c, func(name, src string) string { return "key-of-" + name })
	stream(r.Entry(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: int64(len(content))}, "/src/f"), content, 3)
	first := r.Files()[0]
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}

	// A new bake opens the saved cache: the entry's content is not
	// asked for, and the digests are the cached ones.
	c2 := sbom.OpenCache(path)
	r2 := sbom.NewRecorder(c2, func(name, src string) string { return "key-of-" + name })
	if w := r2.Entry(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: int64(len(content))}, "/src/f"); w != nil {
		t.Fatal("a cached file was hashed again")
	}
	if got := r2.Files()[0]; got.SHA256 != first.SHA256 || got.SHA1 != first.SHA1 {
		t.Errorf("cached digests %+v, want %+v", got, first)
	}
	// Another key is hashed.
	if w := r2.Entry(&tar.Header{Name: "g", Typeflag: tar.TypeReg}, "/src/g"); w == nil {
		t.Error("an uncached file was not hashed")
	}
}

func TestCacheIgnoresADamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "digests.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := sbom.OpenCache(path)
	if _, ok := c.Get("x"); ok {
		t.Fatal("a damaged cache answered")
	}
	c.Put("x", sbom.FileDigest{SHA1: "1", SHA256: "2"})
	if err := c.Save(); err != nil {
		t.Fatalf("saving over a damaged cache: %v", err)
	}
	if d, ok := sbom.OpenCache(path).Get("x"); !ok || d.SHA256 != "2" {
		t.Errorf("after save: %+v %v", d, ok)
	}
}

func TestRecorderReadsGoBuildInfo(t *testing.T) {
	exe, err := os.Executable() // this test binary: a Go binary
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("the test binary has no build info")
	}
	// From disk (a folder source) and from the stream (a tarball's entry).
	for _, src := range []string{exe, ""} {
		r := sbom.NewRecorder(nil, nil)
		stream(r.Entry(&tar.Header{Name: "bin/tool", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(content))}, src), content, 1<<20)
		g := r.Files()[0].Go
		if g == nil {
			t.Fatalf("src %q: no Go build info", src)
		}
		if g.Main.Path != bi.Main.Path || g.GoVersion != bi.GoVersion || len(g.Deps) != len(bi.Deps) {
			t.Errorf("src %q: build info %+v, want main %s, %s, %d deps", src, g, bi.Main.Path, bi.GoVersion, len(bi.Deps))
		}
	}
	// A file that is not ELF has none.
	r := sbom.NewRecorder(nil, nil)
	stream(r.Entry(&tar.Header{Name: "x", Typeflag: tar.TypeReg, Size: 4}, ""), []byte("#!sh"), 4)
	if r.Files()[0].Go != nil {
		t.Error("a script has Go build info")
	}
}

const dpkgStatus = `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries
 Contains the standard libraries.

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2
`

const apkInstalled = `C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
o:musl

C:Q1def=
P:busybox
V:1.36.1-r5
A:x86_64
o:busybox
`

func TestPackagesFromDpkgAndApk(t *testing.T) {
	got := sbom.Packages(map[string][]byte{
		sbom.DpkgStatusPath:   []byte(dpkgStatus),
		sbom.OSReleaseUsrPath: []byte("PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\nVERSION_ID=\"12\"\n"),
	})
	want := []sbom.Package{
		{Type: "deb", Distro: "debian", Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64", Source: "glibc"},
		{Type: "deb", Distro: "debian", Name: "bash", Version: "5.2.15-2+b2", Arch: "amd64"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("dpkg packages = %+v, want %+v", got, want)
	}
	got = sbom.Packages(map[string][]byte{sbom.ApkInstalledPath: []byte(apkInstalled), sbom.OSReleasePath: []byte("ID=alpine\n")})
	want = []sbom.Package{
		{Type: "apk", Distro: "alpine", Name: "musl", Version: "1.2.4-r2", Arch: "x86_64"},
		{Type: "apk", Distro: "alpine", Name: "busybox", Version: "1.36.1-r5", Arch: "x86_64"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("apk packages = %+v, want %+v", got, want)
	}
	if got := sbom.Packages(nil); len(got) != 0 {
		t.Errorf("no database: %+v", got)
	}
}
