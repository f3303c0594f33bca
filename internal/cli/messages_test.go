package cli

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestForeignImageUnderTheVersionTag: a version tag that holds an image
// bakery did not bake is refused with a message that says so, without
// an empty bake key.
func TestForeignImageUnderTheVersionTag(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/team/hello"
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(repo + ":1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	r := run(t, []string{"BAKERY_HOME=" + t.TempDir()}, "-q", "bake", helloProject(t, repo))
	if r.code != exitFailure || !strings.Contains(r.stderr, repo+":1.0.0 already holds an image bakery did not bake") ||
		strings.Contains(r.stderr, "bake key ,") || strings.Contains(r.stderr, "(bake key )") {
		t.Errorf("bake over a foreign image: exit %d:\n%s", r.code, r.stderr)
	}
}
