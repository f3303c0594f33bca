package oci

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/bakery-sh/bakery/recipes"
)

// openTarball opens the archive of a tarball layer and returns its size.
func openTarball(l *recipes.Layer) (*os.File, int64, error) {
	if _, _, err := layerDestination(l); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(l.Path)
	if err != nil {
		return nil, 0, fmt.Errorf("reading layer source: %w; check the source path in the recipe", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("reading layer source: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("reading layer source: %s is %s, not a tar archive", l.Path, describeMode(fi.Mode()))
	}
	return f, fi.Size(), nil
}

// writeTarball re-emits the entries of a tar archive (plain or gzip,
// told apart by its first bytes) under the layer's destination, in
// archive order and normalised like files from disk. A folder that
// exists below the layer (in kept) is written as it is there.
func (w *layerWriter) writeTarball(l *recipes.Layer, archive *os.File, kept keptDirs) error {
	dst, _, err := layerDestination(l)
	if err != nil {
		return err
	}
	uid, gid := layerOwner(l)
	for _, e := range layerParents(dst, uid, gid) {
		if err := w.writeHeader(kept.keep(e)); err != nil {
			return err
		}
	}

	br := bufio.NewReaderSize(&layerReader{ctx: w.ctx, r: archive, step: w.step}, layerBufSize)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("reading tarball %s: %w", l.Path, err)
		}
		defer zr.Close()
		r = zr
	} else if err := w.ctx.Err(); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	modes := map[string]int64{}  // regular files written so far, for hard links
	links := map[string]string{} // symlinks written so far, by name
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // checked below
			return tarballError(l, err)
		}
		rel, err := tarballName(hdr.Name)
		if err != nil {
			return fmt.Errorf("reading tarball %s: entry %q: %w", l.Path, hdr.Name, err)
		}
		if rel == "" {
			continue // the archive's root: the destination folder, already written
		}
		if err := refuseSparse(l, hdr); err != nil {
			return err
		}
		if p, ok := belowLink(rel, links); ok {
			return fmt.Errorf("reading tarball %s: entry %q is below %q, a symlink earlier in the archive (to %q): a layer is never written through a symlink; repack the archive without one of them", l.Path, hdr.Name, p, links[p])
		}
		e := layerEntry{name: joinName(dst, rel), uid: uid, gid: gid}
		switch hdr.Typeflag {
		case tar.TypeDir:
			e.typ, e.name, e.mode = tar.TypeDir, e.name+"/", 0o755
		case tar.TypeReg, tar.TypeCont:
			e.typ, e.mode, e.size = tar.TypeReg, layerFileMode(l, hdr.Mode), hdr.Size
		case tar.TypeSymlink:
			e.typ, e.mode, e.link = tar.TypeSymlink, 0o777, hdr.Linkname
		case tar.TypeLink:
			target, err := tarballName(hdr.Linkname)
			if err != nil || target == "" {
				return fmt.Errorf("reading tarball %s: hard link %q to %q points outside the archive; repack it without that link", l.Path, hdr.Name, hdr.Linkname)
			}
			mode, ok := modes[joinName(dst, target)]
			if _, below := belowLink(target, links); !ok || below {
				return fmt.Errorf("reading tarball %s: hard link %q points to %q, which is not a file earlier in the archive; repack it without that link", l.Path, hdr.Name, hdr.Linkname)
			}
			e.typ, e.mode, e.link = tar.TypeLink, mode, joinName(dst, target)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return fmt.Errorf("reading tarball %s: entry %q is a device or named pipe: a layer holds only regular files, folders and links; repack the archive without it", l.Path, hdr.Name)
		default:
			return fmt.Errorf("reading tarball %s: entry %q has unsupported type %q; repack the archive with regular files, folders and links only", l.Path, hdr.Name, hdr.Typeflag)
		}
		if err := w.writeHeader(kept.keep(e)); err != nil {
			return err
		}
		// The entry replaces whatever the archive had at its name.
		delete(modes, strings.TrimSuffix(e.name, "/"))
		delete(links, rel)
		if e.typ == tar.TypeSymlink {
			links[rel] = e.link
		}
		if e.typ != tar.TypeReg {
			continue
		}
		modes[e.name] = e.mode
		if err := w.copyN(tr, e.size); err != nil {
			return tarballError(l, err)
		}
	}
}

// refuseSparse returns an error when hdr is a sparse file, in GNU's old
// format (type 'S') or its PAX formats (GNU.sparse.* records): its size
// counts holes the archive does not store, so a few bytes can declare
// terabytes (a decompression bomb), which a layer would hold as zeros.
func refuseSparse(l *recipes.Layer, hdr *tar.Header) error {
	sparse := hdr.Typeflag == tar.TypeGNUSparse
	for k := range hdr.PAXRecords {
		sparse = sparse || strings.HasPrefix(k, "GNU.sparse.")
	}
	if !sparse {
		return nil
	}
	return fmt.Errorf("reading tarball %s: entry %q is a sparse file (%d bytes once its holes are filled): bakery does not expand sparse entries, which let a small archive declare terabytes; repack the archive without sparse files (GNU tar without --sparse/-S, or bsdtar --no-read-sparse)", l.Path, hdr.Name, hdr.Size)
}

// tarballError wraps an error met while reading a tarball, leaving a
// cancellation recognisable.
func tarballError(l *recipes.Layer, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("reading tarball %s: %w: the archive is truncated or corrupt; recreate it", l.Path, err)
	}
	return fmt.Errorf("reading tarball %s: %w", l.Path, err)
}

// tarballName returns the name of an archive entry relative to the
// destination, cleaned; "" is the archive's root. A leading "/" is
// dropped, as tar does when extracting. A name that leaves the
// destination through ".." is an error.
func tarballName(name string) (string, error) {
	n := path.Clean(strings.TrimLeft(name, "/"))
	if n == "." {
		return "", nil
	}
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", errors.New(`the name leaves the destination through ".."; repack the archive with relative names inside it`)
	}
	return n, nil
}

// belowLink reports whether a parent of rel, a clean relative name, is a
// symlink of links, and which one. Extracting an entry below a symlink
// writes wherever the symlink points, outside the layer's destination.
func belowLink(rel string, links map[string]string) (string, bool) {
	if len(links) == 0 {
		return "", false
	}
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			if _, ok := links[rel[:i]]; ok {
				return rel[:i], true
			}
		}
	}
	return "", false
}
