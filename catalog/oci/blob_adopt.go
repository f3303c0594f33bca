package oci

import (
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// AdoptBuiltBlob is [Layout.AdoptBlob] for a file whose digest h the
// caller computed from the very bytes it wrote to tmpPath, in this
// process (bake/oci's BuildLayer hashes a layer while writing it): it
// checks that the file still has size bytes instead of reading it all
// again, which spares a sha256 pass over every layer a bake writes.
// A negative size means unknown: the digest is then checked as
// AdoptBlob does.
func (l *Layout) AdoptBuiltBlob(h v1.Hash, size int64, tmpPath string) (created bool, err error) {
	return l.adopt(h, tmpPath, max(size, -1))
}

// AdoptBuiltBlob is [Layout.AdoptBuiltBlob], recording a created blob
// for Rollback.
func (tx *Tx) AdoptBuiltBlob(h v1.Hash, size int64, tmpPath string) (created bool, err error) {
	if err := tx.checkOpen("adopting blob " + h.String()); err != nil {
		_ = os.Remove(tmpPath)
		return false, err
	}
	created, err = tx.l.AdoptBuiltBlob(h, size, tmpPath)
	if created {
		tx.record(h)
	}
	return created, err
}
