// Package oci is bakery's container image store: an OCI image layout
// directory on the local disk (bakery's embedded default, see [OpenLayout])
// and OCI registries (see [NewRegistry]). Both hold lifecycle metadata on
// the artifacts themselves, as manifest annotations and layout ref names, and
// both answer [Store.Lookup] with a [catalog.Image].
//
// [RegistryStore] and [LayoutStore] are the catalog.Store of one container
// artifact: versions are version tags, a stage is a tag named after it on
// the version's digest, and the history is OCI 1.1 referrer artifacts (see
// [EventArtifactType]) attached to each image. Neither keeps state of its
// own, so every process with access to the registry or the directory sees
// the same catalog.
//
// Writes to a [Layout] are safe against interruption and against concurrent
// bakery processes: blobs only ever appear complete under their final name,
// and index.json, the only file that makes an image visible, is replaced
// atomically by [Tx.Commit] while holding the layout's lock (as is the
// history file, bakery-history.json, which lists the lifecycle events
// apart from the images: see [Layout.History]).
//
// Retiring a version ([LayoutStore.RemoveVersion], then [Layout.Prune];
// [RegistryStore.RemoveVersion]) refuses a version a stage tag names, and in
// a layout deletes only blobs nothing in index.json or the history file
// references any more.
package oci
