//go:build !linux

package oci

import (
	"io"
	"os"
)

// openInput opens a layer input for reading.
func openInput(path string) (io.ReadCloser, error) { return os.Open(path) }
