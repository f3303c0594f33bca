package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/bakery-sh/bakery/recipes"
)

// sparseTar returns an archive holding one sparse file, name, of
// realsize bytes: all hole but its last byte, "x". format is "gnu" (an
// old GNU sparse header, type 'S') or "pax" (GNU's PAX sparse format
// 1.0: the map at the start of the entry's data). archive/tar writes
// neither any more, so the blocks are made here.
func sparseTar(t testing.TB, format, name string, realsize int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	switch format {
	case "pax":
		// A PAX extended header (written as a file, its type set to 'x'
		// below) with GNU's sparse records, then the entry: the map, padded
		// to a block, then the one byte of data.
		var recs strings.Builder
		for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(realsize)}} {
			rec := " " + kv[0] + "=" + kv[1] + "\n"
			n := len(rec) + 1
			for len(fmt.Sprint(n))+len(rec) != n {
				n++
			}
			fmt.Fprintf(&recs, "%d%s", n, rec)
		}
		sparseMap := fmt.Sprintf("1\n%d\n1\n", realsize-1)
		data := append([]byte(sparseMap), make([]byte, 512-len(sparseMap))...)
		data = append(data, 'x')
		for _, e := range []struct {
			name string
			data []byte
		}{{"PaxHeaders.0/" + name, []byte(recs.String())}, {"GNUSparseFile.0/" + name, data}} {
			if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data)), Format: tar.FormatUSTAR}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	case "gnu":
		// A one-byte GNU file, then its header made sparse: type 'S', one
		// fragment (offset realsize-1, 1 byte), the real size, a new checksum.
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: tar.FormatGNU}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("format %q", format)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	blk := out[:512]
	octal := func(field []byte, n int64) { copy(field, fmt.Sprintf("%0*o\x00", len(field)-1, n)) }
	if format == "pax" {
		blk[156] = tar.TypeXHeader
	} else {
		blk[156] = tar.TypeGNUSparse
		octal(blk[386:398], realsize-1) // sparse[0].offset
		octal(blk[398:410], 1)          // sparse[0].numbytes
		octal(blk[483:495], realsize)   // realsize
	}
	copy(blk[148:156], "        ")
	sum := int64(0)
	for _, b := range blk {
		sum += int64(b)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return out
}

// TestTarballRefusesSparseEntries: a sparse entry declares its holes
// instead of storing them, so a small archive can expand to terabytes (a
// decompression bomb). bakery refuses it, in both sparse formats, plain
// or gzipped, with one error naming the archive, the entry and what to
// do, and leaves nothing behind. The archives are checked to really be
// sparse, as archive/tar reads them.
func TestTarballRefusesSparseEntries(t *testing.T) {
	const realsize = 4 << 20 // small enough that a regression builds the layer instead of hanging
	for _, format := range []string{"gnu", "pax"} {
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/gzip=%v", format, compress), func(t *testing.T) {
				data := sparseTar(t, format, "big.img", realsize)
				h, err := tar.NewReader(bytes.NewReader(data)).Next()
				if err != nil || h.Name != "big.img" || h.Size != realsize {
					t.Fatalf("the crafted archive reads as %+v, %v: not a sparse big.img of %d bytes", h, err, realsize)
				}
				if compress {
					var z bytes.Buffer
					zw := gzip.NewWriter(&z)
					zw.Write(data)
					zw.Close()
					data = z.Bytes()
				}
				p := filepath.Join(t.TempDir(), "bomb.tar")
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
				out := t.TempDir()
				l := &recipes.Layer{Source: "bomb.tar", Path: p, Kind: recipes.SourceTarball, Destination: "/srv/"}
				_, err = BuildLayer(context.Background(), l, out, testEpoch, nil)
				want := fmt.Sprintf(`reading tarball %s: entry "big.img" is a sparse file (%d bytes once its holes are filled)`, p, realsize)
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "repack the archive without sparse files") {
					t.Fatalf("error %v, want one saying %s and what to do", err, want)
				}
				assertEmpty(t, out)
			})
		}
	}
}
