package oci

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestTagNewRefusesATakenName: two transactions, begun before either
// commits, tag the same new name with different images through TagNew:
// the first commit wins, the second fails with ErrTagTaken and leaves the
// name to the first image; the same image again is no conflict.
func TestTagNewRefusesATakenName(t *testing.T) {
	ctx := context.Background()
	l := openLayout(t, t.TempDir())
	stage := func(img v1.Image) (*Tx, v1.Descriptor) {
		tx := l.Begin()
		t.Cleanup(func() { _ = tx.Rollback() })
		if _, err := tx.WriteImage(ctx, img); err != nil {
			t.Fatal(err)
		}
		desc := descriptor(t, img)
		if err := tx.TagNew("app:2026.11.26.1", desc); err != nil {
			t.Fatal(err)
		}
		return tx, desc
	}
	a, b := randomImage(t, nil), randomImage(t, nil)
	txA, descA := stage(a)
	txB, _ := stage(b)
	txA2, _ := stage(a)
	if err := txA.Commit(ctx); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	if err := txB.Commit(ctx); !errors.Is(err, ErrTagTaken) {
		t.Fatalf("second commit with another image: %v, want ErrTagTaken", err)
	}
	if err := txA2.Commit(ctx); err != nil {
		t.Errorf("commit of the same image under the name: %v", err)
	}
	d, err := l.Find("app:2026.11.26.1")
	if err != nil || d == nil || d.Digest != descA.Digest {
		t.Fatalf("the name holds %v (%v), want the first image %s", d, err, descA.Digest)
	}
}
