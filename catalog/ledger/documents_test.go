package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bakery-sh/bakery/catalog/ledger"
)

// TestDocumentsAreStoredByContent stores a document twice (the second
// conditional put is refused with 412 by moto, which PutDocument takes
// for success): one object, named by the content's sha256, sent with
// If-None-Match, read back by digest.
func TestDocumentsAreStoredByContent(t *testing.T) {
	b := newBucket(t)
	var c calls
	l := b.ledgerWith(t, c.record(b.cfg))
	ctx := context.Background()
	doc := []byte(`{"spdxVersion":"SPDX-2.3"}`)
	sum := sha256.Sum256(doc)
	want := "sha256:" + hex.EncodeToString(sum[:])
	for range 2 {
		got, err := l.PutDocument(ctx, "web", doc)
		if err != nil || got != want {
			t.Fatalf("PutDocument = %s, %v; want %s", got, err, want)
		}
	}
	if keys := b.keys(t, "bakery/web/documents/"); len(keys) != 1 || keys[0] != "bakery/web/documents/sha256-"+hex.EncodeToString(sum[:])+".json" {
		t.Fatalf("objects %v", keys)
	}
	c.mu.Lock()
	for i, op := range c.ops {
		if in, ok := c.in[i].(*s3.PutObjectInput); ok && op == "PutObject" && aws.ToString(in.IfNoneMatch) != "*" {
			t.Errorf("PutObject without If-None-Match: *")
		}
	}
	c.mu.Unlock()
	got, err := l.Document(ctx, "web", want)
	if err != nil || string(got) != string(doc) {
		t.Fatalf("Document = %q, %v", got, err)
	}
}

func TestDocumentMissingOrDamaged(t *testing.T) {
	b := newBucket(t)
	l := b.ledger(t)
	ctx := context.Background()
	missing := "sha256:" + strings.Repeat("0", 64)
	if _, err := l.Document(ctx, "web", missing); !errors.Is(err, ledger.ErrNoDocument) {
		t.Errorf("a missing document: %v, want ErrNoDocument", err)
	}
	if _, err := l.Document(ctx, "web", "md5:abc"); err == nil || !strings.Contains(err.Error(), "sha256:HEX") {
		t.Errorf("a bad digest: %v", err)
	}
	// An object whose content does not match its name.
	if _, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.name), Key: aws.String("bakery/web/documents/sha256-" + strings.Repeat("0", 64) + ".json"), Body: strings.NewReader("{}")}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Document(ctx, "web", missing); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a damaged document: %v", err)
	}
}
