package cli

import (
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// sensitiveRegistryRecipe pushes to a registry whose address is a
// sensitive variable, and takes a sensitive token that must start with
// "tk-".
const sensitiveRegistryRecipe = `variable "registry" {
  type      = string
  sensitive = true
}
variable "token" {
  type      = string
  default   = "tk-0123456789"
  sensitive = true
  validation {
    condition     = substr(var.token, 0, 3) == "tk-"
    error_message = "The token starts with tk-."
  }
}
recipe "web" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "web" {
  base       = "scratch"
  repository = "${var.registry}/team/web"
  labels     = { token = var.token }
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`

func TestSensitiveValuesAreNotPrintedByAnyVerb(t *testing.T) {
	noDockerConfig(t)
	// The registry logs each request as a library would, through the
	// standard logger that BAKERY_DEBUG shows.
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("[DEBUG] registry request %s %s%s", r.Method, r.Host, r.URL.Path)
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"web.bake.hcl": sensitiveRegistryRecipe, "app/index.html": "hi\n"})
	recipe := filepath.Join(dir, "web.bake.hcl")
	env := []string{"BAKERY_HOME=" + t.TempDir(), "BAKERY_DEBUG=1", "BAKERY_VAR_registry=" + host}

	check := func(what string, r result, want ...string) {
		t.Helper()
		for _, secret := range []string{host, "0123456789"} {
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("%s prints the sensitive value %q:\nstdout:\n%s\nstderr:\n%s", what, secret, r.stdout, r.stderr)
			}
		}
		for _, w := range want {
			if !strings.Contains(r.stdout+r.stderr, w) {
				t.Errorf("%s does not print %q:\nstdout:\n%s\nstderr:\n%s", what, w, r.stdout, r.stderr)
			}
		}
	}
	// Progress lines, the JSON result and the debug log (which masks as
	// provisioner output does, with (sensitive value)).
	r := mustRun(t, env, "--output", "json", "bake", recipe)
	check("bake --output json", r, `"(sensitive value)/team/web`, "[DEBUG] registry request GET (sensitive value)/v2/")
	r = mustRun(t, env, "bake", recipe)
	check("bake (text)", r)
	r = mustRun(t, env, "--output", "json", "status", "-f", recipe)
	check("status --output json", r, "1.0.0")
	r = mustRun(t, env, "promote", "-f", recipe, "web@1.0.0", "--to", "dev")
	check("promote", r)

	// Errors: a registry that is gone, and a token that fails validation.
	srv.Close()
	r = run(t, env, "history", "-f", recipe, "web")
	if r.code != 1 {
		t.Errorf("history with the registry gone: exit %d", r.code)
	}
	check("an error", r, "(sensitive value)")
	r = run(t, append(env, "BAKERY_VAR_token=0123456789-bad"), "bake", recipe)
	if r.code != 1 {
		t.Errorf("bake with a bad token: exit %d", r.code)
	}
	check("a validation error", r, "The token starts with tk-.", "(sensitive value)")
}
