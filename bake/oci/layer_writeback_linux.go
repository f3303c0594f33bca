package oci

import (
	"os"

	"golang.org/x/sys/unix"
)

// fileWriteback returns a function that asks Linux to start writing a
// range of f to disk (sync_file_range with SYNC_FILE_RANGE_WRITE), so
// that the fsync that makes a layer durable before it enters the layout
// finds little left to write: the disk works while the layer is still
// being compressed. Errors are ignored; the fsync reports them.
func fileWriteback(f *os.File) func(off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	return func(off, n int64) {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
		})
	}
}
