//go:build !unix

package oci

import "testing"

// mkfifo skips the test: named pipes are a Unix thing.
func mkfifo(t *testing.T, path string) {
	t.Skipf("skipping: no named pipes on this system to create %s", path)
}
