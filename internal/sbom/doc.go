// Package sbom collects what bakery's software bill of materials says
// about an image: the regular files each layer holds with their SHA-1
// and SHA-256 (computed by a [Recorder] in the same pass that writes the
// layer, and remembered in a [Cache] keyed by the bake's input hashes so
// that a repeated bake does not hash them again), the Go modules built
// into Go binaries (debug/buildinfo), and the packages the dpkg and apk
// databases of a base image list. Package spdx writes it as an SPDX 2.3
// document; package intoto writes the SLSA provenance statement.
package sbom
