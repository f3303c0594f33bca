package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// Documents about images (an AMI's SBOM and provenance) are stored by
// content,
//
//	PREFIX/RECIPE/documents/sha256-HEX.json
//
// written with a conditional put (If-None-Match: *) like the events: the
// name is the content's digest, so a document is never overwritten and
// writing it again changes nothing. The image names its documents by
// digest (catalog.TagDocuments on an AMI).

// ErrNoDocument is returned, wrapped, by Document when the ledger has no
// document with that digest.
var ErrNoDocument = errors.New("no such document in the ledger")

// documentKey is where the document with digest ("sha256:HEX") is.
func (l *Ledger) documentKey(recipe, digest string) (string, error) {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if _, err := hex.DecodeString(hexd); !ok || err != nil || len(hexd) != sha256.Size*2 {
		return "", fmt.Errorf("document digest %q is not sha256:HEX", digest)
	}
	return l.key(recipe, "documents", "sha256-"+hexd+".json"), nil
}

// PutDocument stores data as a document of recipe's images and returns
// its digest ("sha256:HEX"), by which Document reads it back.
func (l *Ledger) PutDocument(ctx context.Context, recipe string, data []byte) (string, error) {
	if err := checkRecipe(recipe); err != nil {
		return "", fmt.Errorf("storing a document in %s: %w", l, err)
	}
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	key, err := l.documentKey(recipe, digest)
	if err != nil {
		return "", err
	}
	if err := l.putOnce(ctx, key, data); err != nil && !isPreconditionFailed(err) {
		return "", fmt.Errorf("storing a document of %s in %s (s3://%s/%s): %w", recipe, l, l.bucket, key, awsx.ExplainError(err))
	}
	return digest, nil // 412: there already, and its name is its content's digest
}

// Document reads the document of recipe's images with digest, checking
// its content against it. A missing one is an error wrapping
// ErrNoDocument.
func (l *Ledger) Document(ctx context.Context, recipe, digest string) ([]byte, error) {
	if err := checkRecipe(recipe); err != nil {
		return nil, fmt.Errorf("reading a document from %s: %w", l, err)
	}
	key, err := l.documentKey(recipe, digest)
	if err != nil {
		return nil, fmt.Errorf("reading a document from %s: %w", l, err)
	}
	data, _, err := l.get(ctx, key)
	if awsx.IsNotFound(err) {
		return nil, fmt.Errorf("reading document %s of %s from %s: %w (s3://%s/%s)", digest, recipe, l, ErrNoDocument, l.bucket, key)
	}
	if err != nil {
		return nil, fmt.Errorf("reading document %s of %s from %s: %w", digest, recipe, l, err)
	}
	if sum := sha256.Sum256(data); "sha256:"+hex.EncodeToString(sum[:]) != digest {
		return nil, fmt.Errorf("reading document %s of %s from %s: s3://%s/%s does not match its digest: the ledger is damaged", digest, recipe, l, l.bucket, key)
	}
	return data, nil
}
