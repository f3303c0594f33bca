// Package oci bakes OCI container images without a container daemon.
//
// Layers are built by BuildLayer as deterministic, gzip-compressed tar
// streams written straight to a file: the same inputs give the same
// layer digest on any machine, whatever the file times, umask, owner or
// absolute path of the checkout. HashInputs adds to a bake key exactly
// what decides those bytes, so a bake whose key already exists can be
// skipped after reading each input file once.
package oci
