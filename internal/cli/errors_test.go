package cli

import (
	"bufio"
	"crypto/rand"
	"debug/buildinfo"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"bake"},
		{"bake", "--no-such-flag", "x.bake.hcl"},
		{"--output", "yaml", "version"},
		{"frobnicate"},
		{"bake", "-var", "novalue", "x.bake.hcl"},
	} {
		r := run(t, nil, args...)
		if r.code != 2 {
			t.Errorf("bakery %v: exit %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "bakery") {
			t.Errorf("bakery %v: no message on stderr: %q", args, r.stderr)
		}
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, cmd := range []string{"bake", "validate", "fmt", "version"} {
		r := mustRun(t, nil, cmd, "--help")
		if !strings.Contains(r.stdout, "bakery "+cmd) {
			t.Errorf("%s --help = %q", cmd, r.stdout)
		}
	}
	if r := mustRun(t, nil, "--help"); !strings.Contains(r.stdout, "bake") || !strings.Contains(r.stdout, "--output") {
		t.Errorf("--help = %q", r.stdout)
	}
}

func TestBadRecipesPointAtFileLineCol(t *testing.T) {
	cases := []struct {
		name, recipe string
		files        map[string]string
		want         []string
	}{
		{"malformed", "recipe \"x\" {\n  version = \n}\n", nil, []string{"bad.bake.hcl:2:"}},
		{"unknown attribute", strings.Replace(helloRecipe(""), "entrypoint", "entrypont", 1), map[string]string{"app/hello": "x"}, []string{"bad.bake.hcl:15:3", "entrypont"}},
		{"missing input", helloRecipe(""), nil, []string{"bad.bake.hcl:12:19", "app"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"bad.bake.hcl": tc.recipe}
			for k, v := range tc.files {
				files[k] = v
			}
			writeFiles(t, dir, files)
			home := filepath.Join(t.TempDir(), "home")
			for _, verb := range []string{"validate", "bake"} {
				r := run(t, []string{"BAKERY_HOME=" + home}, verb, filepath.Join(dir, "bad.bake.hcl"))
				if r.code != 1 {
					t.Fatalf("%s: exit %d, want 1; stderr %q", verb, r.code, r.stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%s: stderr lacks %q:\n%s", verb, w, r.stderr)
					}
				}
			}
			if _, err := os.Stat(home); !os.IsNotExist(err) {
				t.Errorf("a failed bake created the layout %s", home)
			}
		})
	}
}

func TestRegistryRefusingAuthChangesNothing(t *testing.T) {
	noDockerConfig(t)
	inner := quietRegistry()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "bot" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	recipe := helloProject(t, host+"/team/hello")
	home := t.TempDir()
	r := run(t, []string{"BAKERY_HOME=" + home}, "bake", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "refused credentials") || !strings.Contains(r.stderr, "docker login "+host) {
		t.Fatalf("exit %d, stderr %q: want the credentials message", r.code, r.stderr)
	}
	// With the right credentials the registry shows no trace of the failed attempt.
	ref, _ := name.ParseReference(host + "/team/hello:1.0.0")
	if _, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "bot", Password: "secret"})); err == nil {
		t.Error("the tag exists after a refused push")
	}
	if ents, _ := os.ReadDir(filepath.Join(home, "blobs", "sha256")); len(ents) != 0 {
		t.Errorf("the refused push left %d blobs in the layout", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(home, "tmp")); len(ents) != 0 {
		t.Errorf("the refused push left staging folders: %v", ents)
	}

	// Credentials from the Docker config make it work.
	cfg := t.TempDir()
	writeFiles(t, cfg, map[string]string{"config.json": `{"auths":{"` + host + `":{"auth":"Ym90OnNlY3JldA=="}}}`})
	t.Setenv("DOCKER_CONFIG", cfg)
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, recipe)
	if _, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "bot", Password: "secret"})); err != nil {
		t.Errorf("push with credentials from DOCKER_CONFIG: %v", err)
	}
}

func TestRegistryDownAndMissingBase(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close() // nothing listens there any more
	home := t.TempDir()

	r := run(t, []string{"BAKERY_HOME=" + home}, "bake", helloProject(t, host+"/team/hello"))
	if r.code != 1 || !strings.Contains(r.stderr, "unreachable") || !strings.Contains(r.stderr, "start the registry") {
		t.Errorf("registry down: exit %d, stderr %q", r.code, r.stderr)
	}

	live := httptest.NewServer(quietRegistry())
	defer live.Close()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"b.bake.hcl": strings.Replace(helloRecipe(""), `"scratch"`, `"`+strings.TrimPrefix(live.URL, "http://")+`/no/such:1"`, 1),
		"app/hello":  "x",
	})
	before := snapshot(t, home)
	r = run(t, []string{"BAKERY_HOME=" + home}, "bake", filepath.Join(dir, "b.bake.hcl"))
	if r.code != 1 || !strings.Contains(r.stderr, "resolving base image") || !strings.Contains(r.stderr, "no/such:1") {
		t.Errorf("missing base: exit %d, stderr %q", r.code, r.stderr)
	}
	sameTree(t, before, snapshot(t, home))
}

func TestFullDiskLeavesLayoutAsItWas(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", home, "tmpfs", 0, "size=256k"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mounting a small tmpfs (needs root, which CI has): %v", err)
		}
		t.Skipf("cannot mount a small tmpfs to fill up (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(home, 0) })
	env := []string{"BAKERY_HOME=" + home}
	bakeJSON(t, env, helloProject(t, "")) // fits
	before := snapshot(t, home)

	recipe := helloProject(t, "")
	big := make([]byte, 1<<20) // random: does not compress below the 256k left
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(filepath.Dir(recipe), "app", "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "bake", "-var", "version=2.0.0", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "no space left") || !strings.Contains(r.stderr, "free") {
		t.Fatalf("full disk: exit %d, stderr %q", r.code, r.stderr)
	}
	sameTree(t, before, snapshot(t, home))
}

var (
	buildOnce sync.Once
	binPath   string // what the tests run
	exePath   string // the Go binary it runs (binPath itself without -race)
	buildErr  error
)

// bakeryBinary builds cmd/bakery once for the tests that signal it. Under
// go test -race it is built with -race too, and runs with
// GORACE=halt_on_error=1 (through a wrapper script at the returned path),
// so a data race in a bakery process ends it with exit status 66 and
// fails the test even where the test expects a failure exit.
func bakeryBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bakery-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bakery")
		exePath = binPath
		args := []string{"build", "-o", exePath}
		if raceEnabled() {
			exePath = filepath.Join(dir, "bakery.race")
			args = []string{"build", "-race", "-o", exePath}
			wrapper := "#!/bin/sh\nGORACE=\"halt_on_error=1 ${GORACE:-}\" exec '" + exePath + "' \"$@\"\n"
			if buildErr = os.WriteFile(binPath, []byte(wrapper), 0o755); buildErr != nil {
				return
			}
		}
		b, err := exec.Command("go", append(args, "github.com/bakery-sh/bakery/cmd/bakery")...).CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", b)
		}
	})
	if buildErr != nil {
		t.Fatalf("building bakery: %v", buildErr)
	}
	return binPath
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestBakeryBinaryIsBuiltWithTheRaceDetectorLikeTheTests: under go test
// -race (make test), the bakery processes the signal, lock and nightly
// tests run are race-checked too, and they run the same bakery as without.
func TestBakeryBinaryIsBuiltWithTheRaceDetectorLikeTheTests(t *testing.T) {
	bin := bakeryBinary(t)
	info, err := buildinfo.ReadFile(exePath)
	if err != nil {
		t.Fatalf("reading the build info of %s: %v", exePath, err)
	}
	race := false
	for _, s := range info.Settings {
		if s.Key == "-race" {
			race = s.Value == "true"
		}
	}
	if race != raceEnabled() {
		t.Errorf("the bakery binary the tests run has -race=%v, the test binary -race=%v", race, raceEnabled())
	}
	if r := runBinary(t, bin, nil, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "bakery ") {
		t.Errorf("%s version: exit %d, stdout %q, stderr %q", bin, r.code, r.stdout, r.stderr)
	}
}

func TestSignalCancelsCleanly(t *testing.T) {
	bin := bakeryBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			home := t.TempDir()
			env := append(os.Environ(), "BAKERY_HOME="+home)
			cmd := exec.Command(bin, "-q", "bake", helloProject(t, ""))
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("bake: %v\n%s", err, out)
			}
			before := snapshot(t, home)

			recipe := helloProject(t, "")
			f, err := os.Create(filepath.Join(filepath.Dir(recipe), "app", "big.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(f, rand.Reader, 300<<20); err != nil {
				t.Fatal(err)
			}
			f.Close()

			cmd = exec.Command(bin, "bake", "-var", "version=9.0.0", recipe)
			cmd.Env = env
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stderr)
			var log []string
			signalled := false
			for sc.Scan() {
				log = append(log, sc.Text())
				if !signalled && strings.Contains(sc.Text(), "layer 1/1") && strings.Contains(sc.Text(), "status=start") {
					time.Sleep(100 * time.Millisecond) // mid-layer
					cmd.Process.Signal(sig)
					signalled = true
				}
			}
			err = cmd.Wait()
			if !signalled {
				t.Fatalf("never saw the layer start:\n%s", strings.Join(log, "\n"))
			}
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Fatalf("exit %d (%v), want 1:\n%s", code, err, strings.Join(log, "\n"))
			}
			if !strings.Contains(strings.Join(log, "\n"), "interrupted") {
				t.Errorf("no interrupted message:\n%s", strings.Join(log, "\n"))
			}
			sameTree(t, before, snapshot(t, home))
		})
	}
}
