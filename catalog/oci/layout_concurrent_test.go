package oci

import (
	"path/filepath"
	"sync"
	"testing"
)

// TestOpenLayoutConcurrentCreation: recipes baked at once open the same
// new layout at the same time; every one of them gets it (one creates
// it, the others find it), none mistakes the half-made layout for a
// foreign directory.
func TestOpenLayoutConcurrentCreation(t *testing.T) {
	for i := range 40 {
		dir := filepath.Join(t.TempDir(), "home")
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				if _, err := OpenLayout(dir); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", i, err)
		}
	}
}
