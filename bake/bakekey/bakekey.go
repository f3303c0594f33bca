// Package bakekey computes bake keys: a sha256 over everything that
// decides a bake's output (the canonical recipe, the resolved base image
// and the content of every input file). Two bakes with the same key
// produce the same image, so a bake whose key already exists is skipped.
package bakekey

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
)

// Hasher accumulates the parts of a bake key. Each part is framed by its
// label and length so that no two different sequences of parts collide.
// The zero value is not usable; call New.
type Hasher struct {
	h hash.Hash
}

// New returns a Hasher for the given key scheme (for example "oci/v1").
// Changing the scheme changes every key, which forces a rebake.
func New(scheme string) *Hasher {
	k := &Hasher{h: sha256.New()}
	k.Add("scheme", []byte(scheme))
	return k
}

// Add appends a labelled part.
func (k *Hasher) Add(label string, data []byte) {
	k.frame(label, uint64(len(data)))
	k.h.Write(data)
}

// AddString appends a labelled string part.
func (k *Hasher) AddString(label, s string) { k.Add(label, []byte(s)) }

// AddReader appends a labelled part of known size read from r.
func (k *Hasher) AddReader(label string, size int64, r io.Reader) error {
	k.frame(label, uint64(size))
	n, err := io.Copy(k.h, r)
	if err != nil {
		return err
	}
	if n != size {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func (k *Hasher) frame(label string, n uint64) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(len(label)))
	k.h.Write(buf[:])
	k.h.Write([]byte(label))
	binary.BigEndian.PutUint64(buf[:], n)
	k.h.Write(buf[:])
}

// Sum returns the key as "sha256:<hex>".
func (k *Hasher) Sum() string {
	return "sha256:" + hex.EncodeToString(k.h.Sum(nil))
}
