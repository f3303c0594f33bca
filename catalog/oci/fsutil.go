package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// tmpPrefix starts the name of every temporary file bakery writes next to
// the file it will become. A crash can leave such files behind; they are
// never referenced and never mistaken for blobs.
const tmpPrefix = ".bakery-tmp-"

// fileError wraps err, which happened while doing action to path, into a
// message that says what the user can do about it.
func fileError(action, path string, err error) error {
	switch {
	case isNoSpace(err):
		return fmt.Errorf("%s %s: the disk is full: free space on that filesystem (or point BAKERY_HOME at a larger one) and retry: %w", action, path, err)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%s %s: permission denied: fix the permissions of %s (it must be writable and on a read-write filesystem) or point BAKERY_HOME elsewhere, then retry: %w", action, path, filepath.Dir(path), err)
	default:
		return fmt.Errorf("%s %s: %w", action, path, err)
	}
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, fsyncs it and renames it into place, so readers see either the
// old content or the new one, never a mix. With replace false an existing
// file is left alone and created reports whether data was written.
func writeFileAtomic(path string, data []byte, replace bool) (created bool, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tmpPrefix+base+"-*")
	if err != nil {
		return false, fileError("writing", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return false, fileError("writing", path, err)
	}
	if err = f.Sync(); err != nil {
		return false, fileError("writing", path, err)
	}
	if err = f.Close(); err != nil {
		return false, fileError("writing", path, err)
	}
	if err = os.Chmod(tmp, 0o644); err != nil {
		return false, fileError("writing", path, err)
	}
	if replace {
		if err = os.Rename(tmp, path); err != nil {
			return false, fileError("writing", path, err)
		}
		syncDir(dir)
		return true, nil
	}
	created, err = placeNoReplace(tmp, path)
	if err != nil {
		return false, fileError("writing", path, err)
	}
	syncDir(dir)
	return created, nil
}

// placeNoReplace moves the complete file tmp to path unless path already
// exists, in which case tmp is removed and created is false. It never
// replaces path, so two writers racing for the same name agree on exactly
// one creator. tmp and path must be on the same filesystem.
func placeNoReplace(tmp, path string) (created bool, err error) {
	err = os.Link(tmp, path)
	switch {
	case err == nil:
		_ = os.Remove(tmp)
		return true, nil
	case errors.Is(err, fs.ErrExist):
		_ = os.Remove(tmp)
		return false, nil
	case errors.Is(err, syscall.EXDEV):
		return false, err
	case linkUnsupported(err):
		// Filesystems without hard links: check, then rename. The window
		// between the two only matters to concurrent writers of the same
		// content, and the rename is still atomic.
		if _, serr := os.Lstat(path); serr == nil {
			_ = os.Remove(tmp)
			return false, nil
		}
		if err := os.Rename(tmp, path); err != nil {
			return false, err
		}
		return true, nil
	default:
		return false, err
	}
}

// syncDir fsyncs a directory so that a rename or link in it survives a
// crash. It is best effort: some filesystems do not support it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// ExplainDiskError says what to do about a full-disk or permission error
// that happened while writing under dir (for example a layer being staged
// in the layout); any other error is returned unchanged.
func ExplainDiskError(dir string, err error) error {
	switch {
	case err == nil:
		return nil
	case isNoSpace(err):
		return fmt.Errorf("%w: the disk holding %s is full: free space on it (or point BAKERY_HOME at a larger one) and retry", err, dir)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %s must be writable: fix its permissions or point BAKERY_HOME elsewhere, then retry", err, dir)
	default:
		return err
	}
}
