// Package oci is bakery's container image store: an OCI image layout
// directory on the local disk (bakery's embedded default, see [OpenLayout])
// and OCI registries (see [NewRegistry]). Both hold lifecycle metadata on
// the artifacts themselves, as manifest annotations and layout ref names, and
// both answer [Store.Lookup] with a [catalog.Image].
//
// Writes to a [Layout] are safe against interruption and against concurrent
// bakery processes: blobs only ever appear complete under their final name,
// and index.json, the only file that makes anything visible, is replaced
// atomically by [Tx.Commit] while holding the layout's lock.
package oci
