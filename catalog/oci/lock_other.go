//go:build !unix

package oci

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// tryLock returns an error outside unix: bakery's layout lock relies on
// flock(2).
func tryLock(path string) (f *os.File, busy bool, err error) {
	return nil, false, fmt.Errorf("file locking is not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func unlockFile(f *os.File) { _ = f.Close() }
