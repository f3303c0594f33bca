package cli

import (
	"testing"

	"io"
	"log"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
)

func emptyIndex() v1.ImageIndex { return empty.Index }

// quietRegistry is an in-process registry that does not log requests.
func quietRegistry() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

func quietLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func randomImage(t *testing.T, size int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
