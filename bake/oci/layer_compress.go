package oci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"

	"github.com/bakery-sh/bakery/recipes"
)

// How a layer is compressed. The tar stream is cut into blocks of
// compressBlockSize bytes, which are compressed in parallel and written
// in order. What a block becomes depends only on its bytes (and, for
// gzip, on the deflateWindow bytes before it), never on how many blocks
// are compressed at once, so the layer's digest does not depend on the
// machine's cores or on GOMAXPROCS.
//
// gzip: one gzip member (RFC 1952) holding one deflate stream, which any
// gunzip reads. Each block is cut into probeSize chunks; a chunk whose
// bytes look random (already-compressed files, encrypted or random data:
// see incompressible) is written as deflate stored blocks, with no
// compression work at all; runs of other chunks are deflated at
// deflateLevel, with the deflateWindow bytes before them (stored or not)
// as dictionary, and end with a sync flush so that the next run starts
// on a byte boundary. The stream ends with an empty final stored block.
//
// zstd: each block is one zstd frame (RFC 8878) compressed at
// zstd.SpeedFastest; a zstd stream is a sequence of frames, and zstd
// readers (containerd, Docker, podman, skopeo, the zstd command) read
// all of them, as they read zstd:chunked layers. zstd itself writes a
// block that does not compress as a raw block. The frames carry no
// content checksum (an xxhash64 of every byte, which the format makes
// optional): the layer's sha256 digest, which every puller checks,
// already covers every byte, and the checksum cost as much CPU as
// reading the inputs.
//
// Changing anything here, or upgrading klauspost/compress in a way that
// changes its output, changes the bytes of layers built from the same
// inputs: change compressionFormat with it, so that the bake keys of
// images baked the old way stop matching.
const (
	// compressBlockSize is the size of the blocks compressed in parallel.
	compressBlockSize = 1 << 20
	// probeSize is the size of the chunks of a gzip block that are
	// stored or deflated on their own.
	probeSize = 64 << 10
	// deflateWindow is how far back a deflate match may refer.
	deflateWindow = 32 << 10
	// deflateLevel is the klauspost/compress/flate level of compressible
	// chunks: as fast as level 1 on text, and smaller.
	deflateLevel = 2
	// maxStoredBlock is the largest deflate stored block.
	maxStoredBlock = 1<<16 - 1
)

// compressionFormat names, for the bake key, how BuildLayer compresses a
// layer with compression c: the codec, its settings and the library.
func compressionFormat(c recipes.Compression) string {
	switch normalCompression(c) {
	case recipes.CompressionZstd:
		return "zstd frames=1MiB level=fastest crc=off window=1MiB klauspost/compress@v1.20"
	default:
		return "gzip deflate blocks=1MiB chunks=64KiB store-if-collision-entropy>=7.8 level=2 klauspost/compress@v1.20"
	}
}

// normalCompression returns c, or gzip when c is empty.
func normalCompression(c recipes.Compression) recipes.Compression {
	if c == "" {
		return recipes.CompressionGzip
	}
	return c
}

// layerMediaType is the OCI media type of a layer compressed with c.
func layerMediaType(c recipes.Compression) types.MediaType {
	if normalCompression(c) == recipes.CompressionZstd {
		return types.OCILayerZStd
	}
	return types.OCILayer
}

// incompressible reports whether p looks random, so that deflating it
// would not pay: whether the collision (Rényi order 2) entropy of its
// bytes is at least 7.8 bits per byte. That entropy is a lower bound of
// the Shannon entropy, so Huffman coding would save at most 2.5% of p.
// The test uses integers only, so that it decides alike on every
// machine. Random data scores about 7.99 on 64 KiB; text, source code,
// executables and most data files score far lower.
func incompressible(p []byte) bool {
	if len(p) < 4<<10 {
		return false // too short to tell; deflate it
	}
	var h [4][256]uint32
	i := 0
	for ; i+4 <= len(p); i += 4 {
		h[0][p[i]]++
		h[1][p[i+1]]++
		h[2][p[i+2]]++
		h[3][p[i+3]]++
	}
	for ; i < len(p); i++ {
		h[0][p[i]]++
	}
	var sumSq uint64
	for b := range 256 {
		n := uint64(h[0][b] + h[1][b] + h[2][b] + h[3][b])
		sumSq += n * n
	}
	n := uint64(len(p))
	// log2(n²/sumSq) >= 7.8  ⇔  sumSq·2^7.8 <= n²; 2^7.8 = 222.8609…
	return sumSq*222861 <= n*n*1000
}

// blockCompressor compresses a stream in parallel blocks (see
// compressBlockSize) and writes the result, in order, to out.
type blockCompressor struct {
	kind recipes.Compression
	out  io.Writer

	// buf is the block being filled: buf[:hist] are the last bytes of the
	// previous block (gzip only: the dictionary of its first chunk),
	// buf[hist:] the block's own bytes.
	buf  []byte
	hist int

	pending chan *compressBlock // blocks in stream order: with the one drain waits for, concurrency
	done    chan error          // the result of drain
	closed  bool

	failMu sync.Mutex
	fail   error // the first error of drain, for Write to return early

	zenc   *zstd.Encoder
	flates sync.Pool // *flate.Writer at deflateLevel
	bufs   sync.Pool // *[]byte of cap deflateWindow+compressBlockSize, for blocks
	outs   sync.Pool // *[]byte, for compressed blocks
}

// compressBlock is one block on its way through the compressor.
type compressBlock struct {
	buf   *[]byte // history + data, returned to the pool once written
	hist  int
	out   *[]byte // the compressed block, returned to the pool once written
	ready chan struct{}
}

// newBlockCompressor starts a compressor writing to out; concurrency
// bounds the blocks in flight (and so memory: about 2.2 MiB each).
func newBlockCompressor(out io.Writer, kind recipes.Compression, concurrency int) *blockCompressor {
	c := &blockCompressor{
		kind:    normalCompression(kind),
		out:     out,
		pending: make(chan *compressBlock, max(concurrency, 1)-1),
		done:    make(chan error, 1),
	}
	c.bufs.New = func() any {
		b := make([]byte, 0, deflateWindow+compressBlockSize)
		return &b
	}
	c.outs.New = func() any {
		b := make([]byte, 0, compressBlockSize+compressBlockSize/64+64)
		return &b
	}
	c.flates.New = func() any {
		w, _ := flate.NewWriter(nil, deflateLevel) // the level is valid
		return w
	}
	if c.kind == recipes.CompressionZstd {
		// The options are valid, so NewWriter cannot fail.
		c.zenc, _ = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(max(concurrency, 1)),
			zstd.WithWindowSize(compressBlockSize),
			zstd.WithEncoderCRC(false))
	}
	c.buf = (*c.bufs.Get().(*[]byte))[:0]
	go c.drain()
	return c
}

// Write implements io.Writer.
func (c *blockCompressor) Write(p []byte) (int, error) {
	if err := c.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		m := copy(c.buf[len(c.buf):c.hist+compressBlockSize], p)
		c.buf = c.buf[:len(c.buf)+m]
		p = p[m:]
		if len(c.buf) == c.hist+compressBlockSize {
			c.submit()
		}
	}
	return n, nil
}

// space returns the free part of the current block, never empty: a
// caller may read data into it and then hand it to commit instead of
// Write, which spares a copy.
func (c *blockCompressor) space() []byte {
	return c.buf[len(c.buf) : c.hist+compressBlockSize]
}

// commit takes p, the start of what space returned, filled with the next
// bytes of the stream, as Write would take a copy of it.
func (c *blockCompressor) commit(p []byte) (int, error) {
	if err := c.failed(); err != nil {
		return 0, err
	}
	free := c.space()
	if len(p) > len(free) || (len(p) > 0 && &p[0] != &free[0]) {
		return 0, errors.New("layer compressor: committed bytes are not in the block's free space")
	}
	c.buf = c.buf[:len(c.buf)+len(p)]
	if len(c.buf) == c.hist+compressBlockSize {
		c.submit()
	}
	return len(p), nil
}

// submit hands the current block to a goroutine and starts the next one.
func (c *blockCompressor) submit() {
	bp := c.bufs.Get().(*[]byte)
	next := (*bp)[:0]
	if c.kind == recipes.CompressionGzip {
		next = append(next, c.buf[max(0, len(c.buf)-deflateWindow):]...)
	}
	cur := c.buf
	b := &compressBlock{buf: &cur, hist: c.hist, ready: make(chan struct{})}
	c.buf, c.hist = next, len(next)
	c.pending <- b // waits while concurrency blocks are in flight
	go c.compress(b)
}

// compress compresses one block.
func (c *blockCompressor) compress(b *compressBlock) {
	defer close(b.ready)
	data := (*b.buf)[b.hist:]
	b.out = c.outs.Get().(*[]byte)
	if c.kind == recipes.CompressionZstd {
		*b.out = c.zenc.EncodeAll(data, (*b.out)[:0])
		return
	}
	fw := c.flates.Get().(*flate.Writer)
	defer c.flates.Put(fw)
	*b.out = deflateBlock((*b.out)[:0], *b.buf, b.hist, fw)
}

// deflateBlock appends to dst the deflate blocks of buf[hist:], whose
// first chunk may refer to buf[:hist]. The result ends on a byte
// boundary and holds no final block.
func deflateBlock(dst, buf []byte, hist int, fw *flate.Writer) []byte {
	data := buf[hist:]
	var stored []bool
	for off := 0; off < len(data); off += probeSize {
		stored = append(stored, incompressible(data[off:min(off+probeSize, len(data))]))
	}
	w := &appendWriter{b: dst}
	for i := 0; i < len(stored); {
		j := i + 1
		for j < len(stored) && stored[j] == stored[i] {
			j++
		}
		from, to := hist+i*probeSize, min(hist+j*probeSize, len(buf))
		if stored[i] {
			w.b = appendStored(w.b, buf[from:to])
		} else {
			fw.ResetDict(w, buf[max(0, from-deflateWindow):from])
			// appendWriter never fails, so neither do these.
			_, _ = fw.Write(buf[from:to])
			_ = fw.Flush()
		}
		i = j
	}
	return w.b
}

// appendStored appends p as non-final deflate stored blocks; the output
// must be on a byte boundary.
func appendStored(dst, p []byte) []byte {
	for len(p) > 0 {
		n := min(len(p), maxStoredBlock)
		// BFINAL=0, BTYPE=00 and padding to the byte; LEN; NLEN.
		dst = append(dst, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, p[:n]...)
		p = p[n:]
	}
	return dst
}

// appendWriter is an io.Writer that appends to a slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// drain writes the header, the blocks in order as they are ready, and the
// trailer. After a write error it still waits for every block, so that
// no goroutine outlives the compressor, but writes nothing more.
func (c *blockCompressor) drain() {
	var (
		err  error
		crc  uint32
		size uint32 // the uncompressed size modulo 2^32, as gzip records it
	)
	write := func(p []byte) {
		if err == nil {
			_, err = c.out.Write(p)
			if err != nil {
				c.failMu.Lock()
				c.fail = err
				c.failMu.Unlock()
			}
		}
	}
	if c.kind == recipes.CompressionGzip {
		// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown.
		write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	}
	for b := range c.pending {
		<-b.ready
		write(*b.out)
		if c.kind == recipes.CompressionGzip {
			data := (*b.buf)[b.hist:]
			crc = crc32.Update(crc, crc32.IEEETable, data)
			size += uint32(len(data))
		}
		c.outs.Put(b.out)
		c.bufs.Put(b.buf)
	}
	if c.kind == recipes.CompressionGzip {
		// An empty final stored block, then CRC32 and ISIZE.
		trailer := []byte{1, 0, 0, 0xff, 0xff}
		trailer = binary.LittleEndian.AppendUint32(trailer, crc)
		trailer = binary.LittleEndian.AppendUint32(trailer, size)
		write(trailer)
	}
	c.done <- err
}

func (c *blockCompressor) failed() error {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	return c.fail
}

// Close compresses what is left, writes the end of the stream and
// returns the first error writing to out.
func (c *blockCompressor) Close() error {
	if c.closed {
		return errors.New("layer compressor closed twice")
	}
	if len(c.buf) > c.hist {
		c.submit()
	}
	return c.stop()
}

// stop waits for every block in flight; the compressor cannot be used
// afterwards. It is Close without the last block.
func (c *blockCompressor) stop() error {
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.pending)
	err := <-c.done
	if c.zenc != nil {
		c.zenc.Close()
	}
	if err != nil {
		return fmt.Errorf("writing the compressed layer: %w", err)
	}
	return nil
}
