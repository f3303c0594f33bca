package oci

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	kflate "github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"

	"github.com/bakery-sh/bakery/recipes"
)

// randomData returns n bytes that do not compress.
func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textData returns n bytes of text made of words, like source code.
func textData(n int) []byte {
	words := strings.Fields("func return if else for range var const type struct interface map string int error nil package import the layer of bytes")
	r := rand.New(rand.NewPCG(3, uint64(n)))
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		if r.IntN(8) == 0 {
			b = append(b, '\n')
		} else {
			b = append(b, ' ')
		}
	}
	return b[:n]
}

// needTool returns the path of a command-line tool; without it the test
// fails under CI and is skipped elsewhere.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (scripts/deps.sh installs it): %v", name, err)
		}
		t.Skipf("%s is not installed (scripts/deps.sh installs it)", name)
	}
	return p
}

func TestIncompressible(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"random 64 KiB", randomData(64<<10, 1), true},
		{"random 5 KiB", randomData(5<<10, 2), true},
		{"gzip output", func() []byte {
			g := gzipBytes(t, testData(1<<20))
			if len(g) < 64<<10 {
				t.Fatalf("gzip output of 1 MiB is only %d bytes", len(g))
			}
			return g[:64<<10]
		}(), true},
		{"text", textData(64 << 10), false},
		{"zeros", make([]byte, 64<<10), false},
		{"random bytes from 128 values", func() []byte {
			b := randomData(64<<10, 3)
			for i := range b {
				b[i] &= 0x7f // 7 bits per byte: Huffman saves 12%
			}
			return b
		}(), false},
		{"random, too short to tell", randomData(1<<10, 4), false},
	} {
		if got := incompressible(tc.data); got != tc.want {
			t.Errorf("%s: incompressible = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func gzipBytes(t *testing.T, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// inflate decodes a deflate stream that lacks its final block, as
// deflateBlock writes it, with the standard library.
func inflate(t *testing.T, stream []byte) []byte {
	t.Helper()
	full := append(bytes.Clone(stream), 1, 0, 0, 0xff, 0xff) // final empty stored block
	out, err := io.ReadAll(flate.NewReader(bytes.NewReader(full)))
	if err != nil {
		t.Fatalf("inflating: %v", err)
	}
	return out
}

func newTestFlate(t *testing.T) *kflate.Writer {
	t.Helper()
	fw, err := kflate.NewWriter(nil, deflateLevel)
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

func TestDeflateBlockStoresRandomData(t *testing.T) {
	data := randomData(compressBlockSize, 5)
	got := deflateBlock(nil, data, 0, newTestFlate(t))

	// Stored blocks: a byte with BFINAL=0 and BTYPE=00, LEN and NLEN
	// (little endian), then LEN bytes as they are; at most 65535 each.
	var want []byte
	for p := data; len(p) > 0; {
		n := min(len(p), 65535)
		want = append(want, 0)
		want = binary.LittleEndian.AppendUint16(want, uint16(n))
		want = binary.LittleEndian.AppendUint16(want, ^uint16(n))
		want = append(want, p[:n]...)
		p = p[n:]
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("a random block is not written as stored blocks: %d bytes, want %d", len(got), len(want))
	}
	if !bytes.Equal(inflate(t, got), data) {
		t.Error("the stored blocks do not inflate to the data")
	}
}

func TestDeflateBlockMixesStoredAndDeflated(t *testing.T) {
	// The history (32 KiB of text before the block), then: text, random,
	// text that repeats the history, random, text.
	hist := textData(deflateWindow)
	var data []byte
	data = append(data, textData(3*probeSize)...)
	data = append(data, randomData(2*probeSize, 6)...)
	data = append(data, hist...)
	data = append(data, hist...)
	data = append(data, randomData(probeSize, 7)...)
	data = append(data, textData(probeSize+123)...)
	buf := append(bytes.Clone(hist), data...)

	fw := newTestFlate(t)
	got := deflateBlock(nil, buf, len(hist), fw)
	// Decode with the history as dictionary: the deflated chunks may
	// refer to it.
	full := append(bytes.Clone(got), 1, 0, 0, 0xff, 0xff)
	out, err := io.ReadAll(flate.NewReaderDict(bytes.NewReader(full), hist))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, data) {
		t.Fatal("the block does not inflate to its data")
	}
	random := 3 * probeSize
	if text := len(data) - random; len(got) > random+text/2 {
		t.Errorf("%d bytes for %d random and %d text bytes: the text was not deflated", len(got), random, text)
	}
	if len(got) < random {
		t.Errorf("%d bytes, less than the %d random bytes", len(got), random)
	}
	// A writer that compressed something else first writes the same bytes.
	_ = deflateBlock(nil, append(randomData(deflateWindow, 8), textData(compressBlockSize)...), deflateWindow, fw)
	if again := deflateBlock(nil, buf, len(hist), fw); !bytes.Equal(again, got) {
		t.Error("a reused flate writer wrote different bytes")
	}
	if fresh := deflateBlock(nil, buf, len(hist), newTestFlate(t)); !bytes.Equal(fresh, got) {
		t.Error("a fresh flate writer wrote different bytes")
	}
}

// fileLayerOf returns a layer of one file holding data.
func fileLayerOf(t *testing.T, data []byte) *recipes.Layer {
	t.Helper()
	p := filepath.Join(t.TempDir(), "blob.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return &recipes.Layer{Source: "blob.bin", Path: p, Kind: recipes.SourceFile, Destination: "/data/"}
}

// gunzipLayer decompresses a layer file with the standard library and
// checks the result against the layer's diffID.
func gunzipLayer(t *testing.T, b *Built) []byte {
	t.Helper()
	f, err := os.Open(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false) // one gzip member, as every reader expects
	tarBytes, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if rest, _ := io.ReadAll(f); len(rest) != 0 {
		t.Errorf("%d bytes after the gzip member", len(rest))
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(tarBytes)); got != b.DiffID.String() {
		t.Fatalf("gunzipped tar hashes to %s, diffID is %s", got, b.DiffID)
	}
	return tarBytes
}

// gzipCommandReads checks that the gzip command decompresses the layer
// to the same bytes.
func gzipCommandReads(t *testing.T, b *Built, want []byte) {
	t.Helper()
	gz := needTool(t, "gzip")
	out, err := exec.Command(gz, "-dc", b.Path).Output()
	if err != nil {
		t.Fatalf("gzip -dc: %v", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("gzip -dc gives %d bytes that differ from Go's %d", len(out), len(want))
	}
}

func TestGzipLayerStoresRandomData(t *testing.T) {
	data := randomData(3<<20+777, 9)
	b := buildTest(t, fileLayerOf(t, data))
	tarBytes := gunzipLayer(t, b)
	gzipCommandReads(t, b, tarBytes)

	// Gzip framing only: 10 bytes of header, 8 of trailer, 5 per stored
	// block of at most 65535 bytes and 5 for the final block, plus the
	// tar's headers and end (zeros, which deflate to a few bytes each
	// with a 5-byte flush).
	framing := int64(10 + 8 + 5 + 5*(len(tarBytes)/65535+1) + 2*64)
	if b.Size < int64(len(data)) || b.Size > int64(len(tarBytes))+framing {
		t.Errorf("layer of %d random bytes (tar %d) is %d bytes, want at most %d", len(data), len(tarBytes), b.Size, int64(len(tarBytes))+framing)
	}
}

func TestGzipLayerDeflatesText(t *testing.T) {
	data := append(textData(2<<20), randomData(1<<20, 10)...)
	data = append(data, textData(1<<20+99)...)
	b := buildTest(t, fileLayerOf(t, data))
	tarBytes := gunzipLayer(t, b)
	gzipCommandReads(t, b, tarBytes)
	text := int64(3<<20 + 99)
	// The text deflates to about a quarter; the random MiB stays as is.
	if max := 1<<20 + text/2; b.Size > max {
		t.Errorf("layer of 3 MiB text and 1 MiB random bytes is %d bytes, want at most %d", b.Size, max)
	}
	// Level 2 on the text: compare with the standard library's level 1
	// on the same bytes (what crane writes).
	if std := int64(len(gzipLevel(t, tarBytes, gzip.BestSpeed))); b.Size > std*105/100 {
		t.Errorf("layer is %d bytes, more than 1.05 × the %d of gzip level 1", b.Size, std)
	}
}

func gzipLevel(t *testing.T, p []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestZstdLayer(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	l := dirLayer(root, "/app/")
	b := buildTest(t, l, WithCompression(recipes.CompressionZstd))
	gz := buildTest(t, l)
	if b.MediaType != types.OCILayerZStd || gz.MediaType != types.OCILayer {
		t.Errorf("media types %s and %s, want %s and %s", b.MediaType, gz.MediaType, types.OCILayerZStd, types.OCILayer)
	}
	if mt, _ := b.Layer().MediaType(); mt != types.OCILayerZStd {
		t.Errorf("Layer().MediaType() = %s", mt)
	}
	if b.DiffID != gz.DiffID {
		t.Errorf("zstd diffID %s, gzip %s: the tar differs", b.DiffID, gz.DiffID)
	}
	if b.Digest == gz.Digest {
		t.Error("zstd and gzip layers have the same digest")
	}
	if !strings.HasSuffix(b.Path, ".tar.zst") {
		t.Errorf("layer file %s", b.Path)
	}
	raw, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != b.Digest.String() || int64(len(raw)) != b.Size {
		t.Errorf("file hashes to %s (%d bytes), layer says %s (%d)", got, len(raw), b.Digest, b.Size)
	}
	zr, err := zstd.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tarBytes, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(tarBytes)); got != b.DiffID.String() {
		t.Errorf("decompressed tar hashes to %s, diffID %s", got, b.DiffID)
	}
	// The tree holds more than one block: more than one frame.
	if n := bytes.Count(raw, []byte{0x28, 0xb5, 0x2f, 0xfd}); n < 2 {
		t.Errorf("%d zstd frame magics, want one per MiB", n)
	}
	// No content checksum (bit 2 of the frame header descriptor, after
	// the magic): the layer digest covers the bytes already.
	if raw[4]&0x04 != 0 {
		t.Errorf("the first frame's header descriptor %#x asks for a content checksum", raw[4])
	}
	// go-containerregistry reads it back (its validate.Layer knows gzip only).
	rc, err := b.Layer().Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	fromLayer, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(fromLayer, tarBytes) {
		t.Errorf("Layer().Uncompressed() gives %d bytes (%v), want the %d of the tar", len(fromLayer), err, len(tarBytes))
	}
	// The reference implementation reads every frame.
	out, err := exec.Command(needTool(t, "zstd"), "-dc", b.Path).Output()
	if err != nil {
		t.Fatalf("zstd -dc: %v", err)
	}
	if !bytes.Equal(out, tarBytes) {
		t.Errorf("zstd -dc gives %d bytes, Go %d", len(out), len(tarBytes))
	}
}

func TestLayerCompressionIsReproducible(t *testing.T) {
	// Text, random data and text again, over several blocks.
	data := append(textData(1<<20+5), randomData(2<<20, 11)...)
	data = append(data, textData(1<<20)...)
	l := fileLayerOf(t, data)
	for _, c := range []recipes.Compression{recipes.CompressionGzip, recipes.CompressionZstd} {
		first := buildTest(t, l, WithCompression(c), WithLayerConcurrency(1))
		for _, n := range []int{2, 3, 8, 32} {
			b := buildTest(t, l, WithCompression(c), WithLayerConcurrency(n))
			if b.Digest != first.Digest || b.Size != first.Size {
				t.Errorf("%s, %d blocks at a time: digest %s size %d; one at a time: %s %d", c, n, b.Digest, b.Size, first.Digest, first.Size)
			}
		}
	}
	// Concurrent builds share nothing that changes their bytes.
	want := buildTest(t, l).Digest
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			b, err := BuildLayer(context.Background(), l, t.TempDir(), testEpoch, nil, WithLayerConcurrency(3))
			if err == nil && b.Digest != want {
				err = fmt.Errorf("digest %s, want %s", b.Digest, want)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestBuildLayerRejectsUnknownCompression(t *testing.T) {
	dir := t.TempDir()
	_, err := BuildLayer(context.Background(), fileLayerOf(t, []byte("x")), dir, testEpoch, nil, WithCompression("xz"))
	if err == nil || !strings.Contains(err.Error(), `unknown compression "xz"`) || !strings.Contains(err.Error(), "gzip or zstd") {
		t.Fatalf("err = %v", err)
	}
	assertEmpty(t, dir)
}

// failingWriter accepts n bytes, then fails.
type failingWriter struct{ n int }

var errDiskFull = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		m := w.n
		w.n = 0
		return m, errDiskFull
	}
	w.n -= len(p)
	return len(p), nil
}

func TestBlockCompressorReportsWriteErrors(t *testing.T) {
	for _, c := range []recipes.Compression{recipes.CompressionGzip, recipes.CompressionZstd} {
		bc := newBlockCompressor(&failingWriter{n: 100 << 10}, c, 2)
		data := randomData(16<<20, 14)
		var werr error
		for p := data; len(p) > 0 && werr == nil; p = p[min(len(p), 1<<20):] {
			_, werr = bc.Write(p[:min(len(p), 1<<20)])
		}
		if werr == nil {
			t.Errorf("%s: 16 MiB written into a writer that fails after 100 KiB", c)
		}
		if err := bc.Close(); !errors.Is(err, errDiskFull) {
			t.Errorf("%s: Close = %v, want the write error", c, err)
		}
		if err := bc.Close(); err == nil {
			t.Errorf("%s: a second Close succeeded", c)
		}
	}
}

// Reading into the block (space, then commit) must give the stream Write
// gives, whatever the sizes of the reads and across block boundaries.
func TestBlockCompressorCommitInPlaceEqualsWrite(t *testing.T) {
	data := append(textData(3<<20+5), randomData(1<<20+7, 3)...)
	for _, c := range []recipes.Compression{recipes.CompressionGzip, recipes.CompressionZstd} {
		var viaWrite, inPlace bytes.Buffer
		bc := newBlockCompressor(&viaWrite, c, 2)
		if _, err := bc.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := bc.Close(); err != nil {
			t.Fatal(err)
		}
		bc = newBlockCompressor(&inPlace, c, 2)
		rest := data
		for step := 1; len(rest) > 0; step = step*7 + 3 {
			free := bc.space()
			n := min(len(free), len(rest), step%(900<<10)+1)
			copy(free, rest[:n])
			if m, err := bc.commit(free[:n]); err != nil || m != n {
				t.Fatalf("commit of %d bytes: %d, %v", n, m, err)
			}
			rest = rest[n:]
		}
		if err := bc.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(viaWrite.Bytes(), inPlace.Bytes()) {
			t.Errorf("%s: the stream built in place (%d bytes) differs from the one written (%d bytes)", c, inPlace.Len(), viaWrite.Len())
		}
	}
	bc := newBlockCompressor(io.Discard, recipes.CompressionGzip, 1)
	defer bc.stop()
	if _, err := bc.commit(make([]byte, 10)); err == nil {
		t.Error("commit accepted bytes that are not in the block's free space")
	}
}
