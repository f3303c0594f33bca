package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestOpenLayoutCreatesAndReopens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", ".bakery")
	openLayout(t, dir)

	var marker map[string]string
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "oci-layout")), &marker); err != nil {
		t.Fatal(err)
	}
	if marker["imageLayoutVersion"] != "1.0.0" {
		t.Errorf("oci-layout = %v, want imageLayoutVersion 1.0.0", marker)
	}
	index := readFile(t, filepath.Join(dir, "index.json"))
	var im struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(index, &im); err != nil {
		t.Fatal(err)
	}
	if im.SchemaVersion != 2 || im.MediaType != string(types.OCIImageIndex) || im.Manifests == nil || len(im.Manifests) != 0 {
		t.Errorf("index.json = %s, want an empty OCI index with manifests []", index)
	}
	if !bytes.Contains(index, []byte(`"manifests": []`)) {
		t.Errorf("index.json = %s, want manifests written as []", index)
	}
	if fi, err := os.Stat(filepath.Join(dir, "blobs", "sha256")); err != nil || !fi.IsDir() {
		t.Errorf("blobs/sha256 missing: %v", err)
	}
	validateLayout(t, dir)

	// Reopening an existing layout with content changes nothing.
	l := openLayout(t, dir)
	bakeInto(t, l, "hello:1.0.0", randomImage(t, nil))
	before := readFile(t, filepath.Join(dir, "index.json"))
	openLayout(t, dir)
	if after := readFile(t, filepath.Join(dir, "index.json")); !bytes.Equal(before, after) {
		t.Errorf("reopening changed index.json:\n%s\nto\n%s", before, after)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temporary file %s left in the layout", e.Name())
		}
	}
}

func TestOpenLayoutRefusesOtherDirectories(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLayout(dir)
	if err == nil || !strings.Contains(err.Error(), "not an OCI image layout") || !strings.Contains(err.Error(), "go.mod") {
		t.Fatalf("OpenLayout(dir with go.mod) = %v, want a not-a-layout error naming go.mod", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenLayout wrote into a foreign directory: %v", err)
	}

	file := filepath.Join(dir, "go.mod")
	if _, err := OpenLayout(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("OpenLayout(file) = %v, want a not-a-directory error", err)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "oci-layout"), []byte(`{"imageLayoutVersion":"2.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLayout(bad); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("OpenLayout(version 2 layout) = %v, want a version error", err)
	}

	// What an interrupted OpenLayout leaves behind is not foreign.
	partial := t.TempDir()
	for _, n := range []string{".lock", tmpPrefix + "oci-layout-123"} {
		if err := os.WriteFile(filepath.Join(partial, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	openLayout(t, partial)
}

func TestDefaultDir(t *testing.T) {
	env := map[string]string{}
	if got := DefaultDir(func(k string) string { return env[k] }); got != ".bakery" {
		t.Errorf("DefaultDir() = %q, want .bakery", got)
	}
	env["BAKERY_HOME"] = "/var/lib/bakery"
	if got := DefaultDir(func(k string) string { return env[k] }); got != "/var/lib/bakery" {
		t.Errorf("DefaultDir() with BAKERY_HOME = %q", got)
	}
}

func TestWriteTagFindRetag(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLayout(t, dir)

	if d, err := l.Find("hello:1.1.0"); d != nil || err != nil {
		t.Fatalf("Find on empty layout = %v, %v; want nil, nil", d, err)
	}

	img := randomImage(t, map[string]string{catalog.AnnotationVersion: "1.1.0"})
	tx := l.Begin()
	created, err := tx.WriteImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 5 { // 3 layers, config, manifest
		t.Errorf("WriteImage created %d blobs, want 5", len(created))
	}
	desc := descriptor(t, img)
	desc.Annotations = map[string]string{"com.example.keep": "yes"}
	if err := tx.Tag("hello:1.1.0", desc); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Find("hello:1.1.0"); d != nil {
		t.Fatal("a staged tag is visible before Commit")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := l.Find("hello:1.1.0")
	if err != nil || got == nil {
		t.Fatalf("Find after Commit = %v, %v", got, err)
	}
	if got.Digest != desc.Digest || got.Size != desc.Size || got.MediaType != desc.MediaType {
		t.Errorf("Find = %+v, want %+v", got, desc)
	}
	if got.Annotations[catalog.AnnotationRefName] != "hello:1.1.0" || got.Annotations["com.example.keep"] != "yes" {
		t.Errorf("annotations = %v, want ref name and the caller's own", got.Annotations)
	}
	validateLayout(t, dir)

	// Writing the same image again creates nothing; a lost layer is
	// written again.
	if again, err := l.WriteImage(ctx, img); err != nil || len(again) != 0 {
		t.Errorf("rewriting the image created %v, %v; want nothing", again, err)
	}
	layers, _ := img.Layers()
	lost, _ := layers[0].Digest()
	if err := os.Remove(l.BlobPath(lost)); err != nil {
		t.Fatal(err)
	}
	if again, err := l.WriteImage(ctx, img); err != nil || len(again) != 1 || again[0] != lost {
		t.Errorf("rewriting the image after losing %s created %v, %v", lost, again, err)
	}

	// Another tag (Docker media types work too), then re-tag hello:1.1.0:
	// replaced in place, others kept.
	other := bakeInto(t, l, "other:1", dockerImage(t))
	img2 := randomImage(t, nil)
	desc2 := bakeInto(t, l, "hello:1.1.0", img2)
	descs, err := l.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	if len(descs) != 2 {
		t.Fatalf("index has %d descriptors after re-tag, want 2: %+v", len(descs), descs)
	}
	if descs[0].Digest != desc2.Digest || descs[0].Annotations[catalog.AnnotationRefName] != "hello:1.1.0" {
		t.Errorf("re-tag did not replace in place: %+v", descs[0])
	}
	if descs[1].Digest != other.Digest {
		t.Errorf("other:1 = %v, want %v", descs[1].Digest, other.Digest)
	}
	validateLayout(t, dir)

	// Read the image back through go-containerregistry.
	found, _ := l.Find("hello:1.1.0")
	back, err := l.Image(*found)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := back.Digest(); d != desc2.Digest {
		t.Errorf("Image().Digest() = %v, want %v", d, desc2.Digest)
	}
	if _, err := l.Index(*found); err == nil {
		t.Error("Index(image descriptor) succeeded, want an error")
	}

	// Untag removes the name only.
	tx = l.Begin()
	if err := tx.Untag("other:1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Find("other:1"); d != nil {
		t.Error("other:1 still tagged after Untag")
	}
	if has, _ := l.HasBlob(other.Digest); !has {
		t.Error("Untag removed the manifest blob")
	}
}

func TestTagRejectsBadInput(t *testing.T) {
	l := openLayout(t, t.TempDir())
	img := randomImage(t, nil)
	desc := descriptor(t, img)
	tx := l.Begin()
	for _, name := range []string{"", "hello", ":1", "hello:", "hello world:1", "hello:1 2"} {
		if err := tx.Tag(name, desc); err == nil {
			t.Errorf("Tag(%q) succeeded, want an error", name)
		}
	}
	if err := tx.Tag("hello:1", v1.Descriptor{Digest: desc.Digest}); err == nil {
		t.Error("Tag(descriptor without media type or size) succeeded")
	}
	// Tagging what was never written fails at Commit, leaving the layout as is.
	before := readFile(t, filepath.Join(l.Dir(), "index.json"))
	if err := tx.Tag("hello:1", desc); err != nil {
		t.Fatal(err)
	}
	err := tx.Commit(context.Background())
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Commit of an unwritten image = %v, want a missing-blob error", err)
	}
	if after := readFile(t, filepath.Join(l.Dir(), "index.json")); !bytes.Equal(before, after) {
		t.Error("failed Commit changed index.json")
	}
	// A tag on a written manifest whose layer vanished is refused too.
	if _, err := tx.WriteImage(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	if err := os.Remove(l.BlobPath(ld)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err == nil || !strings.Contains(err.Error(), ld.String()) {
		t.Fatalf("Commit with a missing layer = %v, want an error naming %s", err, ld)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Tag("hello:1", desc); err == nil {
		t.Error("Tag after Rollback succeeded")
	}
}

func TestConcurrentWritersBothTagsSurvive(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openLayout(t, dir)
	b := openLayout(t, dir) // as if another bakery process

	imgA, imgB := randomImage(t, nil), randomImage(t, nil)
	txA := a.Begin()
	if _, err := txA.WriteImage(ctx, imgA); err != nil {
		t.Fatal(err)
	}
	if err := txA.Tag("a:1", descriptor(t, imgA)); err != nil {
		t.Fatal(err)
	}
	// b bakes and commits while a is still in flight.
	bakeInto(t, b, "b:1", imgB)
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"a:1", "b:1"} {
		if d, err := a.Find(ref); err != nil || d == nil {
			t.Errorf("Find(%s) = %v, %v after both commits", ref, d, err)
		}
	}
	validateLayout(t, dir)

	// Many writers at once, each with its own Layout value.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := OpenLayout(dir)
			if err != nil {
				errs <- err
				return
			}
			img, err := random.Image(512, 1)
			if err != nil {
				errs <- err
				return
			}
			tx := l.Begin()
			defer tx.Rollback()
			if _, err := tx.WriteImage(ctx, img); err != nil {
				errs <- err
				return
			}
			d, _ := img.Digest()
			sz, _ := img.Size()
			mt, _ := img.MediaType()
			if err := tx.Tag(fmt.Sprintf("many:%d", i), v1.Descriptor{MediaType: mt, Size: sz, Digest: d}); err != nil {
				errs <- err
				return
			}
			errs <- tx.Commit(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	descs, _ := a.Descriptors()
	if len(descs) != 10 {
		t.Errorf("index has %d descriptors, want 10", len(descs))
	}
}

// TestHelperCommitter is not a test: TestConcurrentProcesses runs the test
// binary as separate bakery-like processes that each commit tags.
func TestHelperCommitter(t *testing.T) {
	dir := os.Getenv("BAKERY_OCI_TEST_COMMIT_DIR")
	if dir == "" {
		t.Skip("helper process for TestConcurrentProcesses")
	}
	id := os.Getenv("BAKERY_OCI_TEST_COMMIT_ID")
	n, _ := strconv.Atoi(os.Getenv("BAKERY_OCI_TEST_COMMIT_N"))
	l := openLayout(t, dir)
	for i := range n {
		bakeInto(t, l, fmt.Sprintf("proc%s:%d", id, i), randomImage(t, nil))
	}
}

func TestConcurrentProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	const procs, each = 4, 5
	var cmds []*exec.Cmd
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCommitter$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"BAKERY_OCI_TEST_COMMIT_DIR="+dir,
			"BAKERY_OCI_TEST_COMMIT_ID="+strconv.Itoa(p),
			"BAKERY_OCI_TEST_COMMIT_N="+strconv.Itoa(each))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("process %d output:\n%s", p, out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process: %v", err)
		}
	}
	l := openLayout(t, dir)
	for p := range procs {
		for i := range each {
			if d, err := l.Find(fmt.Sprintf("proc%d:%d", p, i)); err != nil || d == nil {
				t.Errorf("proc%d:%d lost: %v", p, i, err)
			}
		}
	}
	validateLayout(t, dir)
}

func TestRollbackRestoresLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLayout(t, dir)
	base := randomImage(t, nil)
	bakeInto(t, l, "base:1", base)

	indexBefore := readFile(t, filepath.Join(dir, "index.json"))
	blobsBefore := blobFiles(t, dir)

	// An image sharing base's layers: rollback must keep the shared ones.
	layer, err := random.Layer(1024, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	child, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	tx := l.Begin()
	stage, err := tx.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	created, err := tx.WriteImage(ctx, child)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 3 { // new layer, config, manifest
		t.Errorf("created %d blobs, want 3 (shared layers already present)", len(created))
	}
	if err := tx.Tag("child:1", descriptor(t, child)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if after := readFile(t, filepath.Join(dir, "index.json")); !bytes.Equal(indexBefore, after) {
		t.Errorf("index.json changed by a rolled-back transaction")
	}
	if after := blobFiles(t, dir); strings.Join(after, ",") != strings.Join(blobsBefore, ",") {
		t.Errorf("blobs after rollback = %v, want %v", after, blobsBefore)
	}
	if _, err := os.Stat(stage); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging dir %s survived rollback: %v", stage, err)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Error("Commit after Rollback succeeded")
	}
	validateLayout(t, dir)

	// Rollback after Commit is a no-op.
	tx = l.Begin()
	if _, err := tx.WriteImage(ctx, child); err != nil {
		t.Fatal(err)
	}
	if err := tx.Tag("child:1", descriptor(t, child)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	validateLayout(t, dir)
}

func TestRollbackKeepsBlobsAnotherWriterCommitted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := openLayout(t, dir), openLayout(t, dir)
	img := randomImage(t, nil)
	txA := a.Begin()
	if created, err := txA.WriteImage(ctx, img); err != nil || len(created) != 5 {
		t.Fatalf("WriteImage = %v, %v", created, err)
	}
	// b finds every blob present, creates nothing and commits a tag on it.
	bakeInto(t, b, "shared:1", img)
	if err := txA.Rollback(); err != nil {
		t.Fatal(err)
	}
	validateLayout(t, dir)
	if d, _ := b.Find("shared:1"); d == nil {
		t.Fatal("shared:1 lost")
	}
}

// failingReader returns n bytes of data, then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

// failingLayer is a layer whose content stream breaks after 100 bytes.
type failingLayer struct{ v1.Layer }

func (l failingLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(&failingReader{n: 100}), nil
}

func TestInterruptedWritesLeaveNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLayout(t, dir)

	data := randomBytes(t, 1<<20)
	h := hashOf(data)
	_, err := l.WriteBlob(h, io.MultiReader(bytes.NewReader(data[:1<<19]), &failingReader{}))
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("WriteBlob(broken reader) = %v", err)
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("interrupted WriteBlob left %v", files)
	}
	if has, _ := l.HasBlob(h); has {
		t.Error("HasBlob reports an interrupted blob")
	}

	// Content that does not match its digest is refused.
	if _, err := l.WriteBlob(h, bytes.NewReader(data[1:])); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("WriteBlob(wrong content) = %v, want a digest error", err)
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("mismatched WriteBlob left %v", files)
	}
	if created, err := l.WriteBlob(h, bytes.NewReader(data)); err != nil || !created {
		t.Fatalf("WriteBlob = %v, %v", created, err)
	}
	if created, err := l.WriteBlob(h, &failingReader{}); err != nil || created {
		t.Errorf("WriteBlob(present blob) = %v, %v; want false, nil without reading", created, err)
	}
	if err := os.Remove(l.BlobPath(h)); err != nil {
		t.Fatal(err)
	}

	// An image whose last layer breaks mid-stream: the transaction rolls
	// back to exactly nothing.
	base := randomImage(t, nil)
	layer, _ := random.Layer(4096, types.OCILayer)
	img, err := mutate.AppendLayers(base, failingLayer{layer})
	if err != nil {
		t.Fatal(err)
	}
	tx := l.Begin()
	if _, err := tx.WriteImage(ctx, img); err == nil {
		t.Fatal("WriteImage with a broken layer succeeded")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("rolled-back broken image left %v", files)
	}

	// A cancelled context stops the write and leaves nothing either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	tx = l.Begin()
	if _, err := tx.WriteImage(cctx, base); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteImage(cancelled) = %v, want context.Canceled", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("cancelled write left %v", files)
	}
}

func TestAdoptBlob(t *testing.T) {
	dir := t.TempDir()
	l := openLayout(t, dir)
	tx := l.Begin()
	stage, err := tx.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stage, filepath.Join(dir, "tmp")+string(filepath.Separator)) {
		t.Errorf("TempDir() = %s, want it under %s/tmp", stage, dir)
	}
	data := randomBytes(t, 10000)
	h := hashOf(data)
	tmp := filepath.Join(stage, "layer.tar.gz")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	created, err := tx.AdoptBlob(h, tmp)
	if err != nil || !created {
		t.Fatalf("AdoptBlob = %v, %v", created, err)
	}
	if got := readFile(t, l.BlobPath(h)); !bytes.Equal(got, data) {
		t.Error("adopted blob content differs")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Error("AdoptBlob left its source behind")
	}

	// Adopting a present blob removes the source and creates nothing.
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if created, err := tx.AdoptBlob(h, tmp); err != nil || created {
		t.Errorf("AdoptBlob(present) = %v, %v", created, err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Error("AdoptBlob(present) left its source behind")
	}

	// A file that does not match its digest is refused and removed.
	other := randomBytes(t, 100)
	if err := os.WriteFile(tmp, other[:50], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.AdoptBlob(hashOf(other), tmp); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("AdoptBlob(truncated file) = %v, want a digest error", err)
	}
	if has, _ := l.HasBlob(hashOf(other)); has {
		t.Error("a truncated file was adopted")
	}
	if got := tx.Created(); len(got) != 1 || got[0] != h {
		t.Errorf("Created() = %v, want [%v]", got, h)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("rollback left %v", files)
	}
	if _, err := os.Stat(stage); !errors.Is(err, os.ErrNotExist) {
		t.Error("rollback left the staging dir")
	}
}

func TestLockContention(t *testing.T) {
	dir := t.TempDir()
	a, b := openLayout(t, dir), openLayout(t, dir)
	unlock, err := a.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Lock waits while the layout is held, and gives up with its context:
	// not before the deadline, and with the deadline's error.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = b.Lock(ctx)
	if err == nil || !strings.Contains(err.Error(), "another bakery process holds the layout") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held = %v, want a held-by-another-process error wrapping DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("Lock gave up after %v, before its 150ms deadline", waited)
	}

	// Commit waits for the lock too, and gives up with the context.
	img := randomImage(t, nil)
	tx := b.Begin()
	if _, err := tx.WriteImage(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	if err := tx.Tag("x:1", descriptor(t, img)); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := tx.Commit(ctx2); err == nil || !strings.Contains(err.Error(), "another bakery process") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Commit while locked = %v, want a held-by-another-process error wrapping DeadlineExceeded", err)
	}

	// Once released, the waiting side gets it.
	go func() {
		time.Sleep(50 * time.Millisecond)
		unlock()
	}()
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatalf("Commit after release: %v", err)
	}
	if d, _ := a.Find("x:1"); d == nil {
		t.Error("x:1 missing after commit")
	}
}

func TestWriteIndexAndLookupInLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLayout(t, dir)

	base := randomImage(t, nil)
	layer, _ := random.Layer(1024, types.OCILayer)
	second, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	created := "2025-03-01T10:20:30Z"
	ann := map[string]string{
		catalog.AnnotationRecipe:     "hello",
		catalog.AnnotationArtifact:   "app",
		catalog.AnnotationVersion:    "1.1.0",
		catalog.AnnotationBakeKey:    "sha256:abc",
		catalog.AnnotationBaseName:   "docker.io/library/alpine:3.20",
		catalog.AnnotationBaseDigest: "sha256:def",
		catalog.AnnotationCreated:    created,
	}
	base, second = withPlatform(t, base, "amd64"), withPlatform(t, second, "arm64")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: base, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: second, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	idx = mutate.Annotations(idx, ann).(v1.ImageIndex)

	tx := l.Begin()
	if _, err := tx.WriteIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Tag("hello:1.1.0", descriptor(t, idx)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	validateLayout(t, dir)

	got, err := l.Lookup(ctx, "hello:1.1.0")
	if err != nil || got == nil {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	want := wantImage(t, "hello:1.1.0", idx, created)
	want.Size = indexSize(t, idx)
	if *got != want {
		t.Errorf("Lookup =\n%+v\nwant\n%+v", *got, want)
	}
	// Every blob of the layout is counted, shared layers once.
	var onDisk int64
	for _, n := range blobFiles(t, dir) {
		fi, _ := os.Stat(filepath.Join(dir, "blobs", "sha256", n))
		onDisk += fi.Size()
	}
	if got.Size != onDisk {
		t.Errorf("Size = %d, but the layout's blobs total %d", got.Size, onDisk)
	}

	d, _ := l.Find("hello:1.1.0")
	back, err := l.Index(*d)
	if err != nil {
		t.Fatal(err)
	}
	if bd, _ := back.Digest(); bd != d.Digest {
		t.Errorf("Index().Digest() = %v", bd)
	}

	if img, err := l.Lookup(ctx, "hello:9"); img != nil || err != nil {
		t.Errorf("Lookup(absent) = %v, %v; want nil, nil", img, err)
	}
}

// withPlatform sets linux/arch in img's config, as validate.Index expects of
// an index child with a platform.
func withPlatform(t *testing.T, img v1.Image, arch string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantImage(t *testing.T, ref string, m interface{ Digest() (v1.Hash, error) }, created string) catalog.Image {
	t.Helper()
	d, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := time.Parse(time.RFC3339, created)
	if err != nil {
		t.Fatal(err)
	}
	return catalog.Image{
		Ref:        catalog.Ref{Recipe: "hello", Version: "1.1.0"},
		Artifact:   "app",
		Kind:       "container",
		BakeKey:    "sha256:abc",
		Reference:  ref,
		Digest:     d.String(),
		BaseName:   "docker.io/library/alpine:3.20",
		BaseDigest: "sha256:def",
		Created:    ct,
	}
}

// imageBlobs adds the manifest, config and layers of img to sizes.
func imageBlobs(t *testing.T, img v1.Image, sizes map[v1.Hash]int64) {
	t.Helper()
	d, _ := img.Digest()
	sz, _ := img.Size()
	sizes[d] = sz
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	sizes[m.Config.Digest] = m.Config.Size
	for _, l := range m.Layers {
		sizes[l.Digest] = l.Size
	}
}

func imageSize(t *testing.T, img v1.Image) int64 {
	sizes := map[v1.Hash]int64{}
	imageBlobs(t, img, sizes)
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n
}

func indexSize(t *testing.T, idx v1.ImageIndex) int64 {
	t.Helper()
	sizes := map[v1.Hash]int64{}
	d, _ := idx.Digest()
	sz, _ := idx.Size()
	sizes[d] = sz
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range im.Manifests {
		img, err := idx.Image(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		imageBlobs(t, img, sizes)
	}
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n
}

func TestImageFromAnnotations(t *testing.T) {
	h := hashOf([]byte("x"))
	img, err := ImageFromAnnotations("r", h, 3, nil)
	if err != nil || img.Kind != "container" || img.Digest != h.String() || img.Size != 3 || !img.Created.IsZero() {
		t.Errorf("ImageFromAnnotations(no annotations) = %+v, %v", img, err)
	}
	if _, err := ImageFromAnnotations("r", h, 3, map[string]string{catalog.AnnotationCreated: "yesterday"}); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("bad created = %v, want an RFC 3339 error", err)
	}
}

func TestTempDirRemovesStaleStagingLeftByAKilledBake(t *testing.T) {
	l, err := OpenLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old, err := l.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "layer-1.tar.gz"), []byte("half a layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	young, err := l.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-StaleAfter - time.Hour)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	if _, err := l.TempDir(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale staging directory %s survived: %v", old, err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a running bake's staging directory was removed: %v", err)
	}
}
