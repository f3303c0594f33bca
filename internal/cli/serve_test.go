package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/internal/dashboard"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// shiftClock is the wall clock moved forward by hand, so a test can step
// past the dashboard's cache without waiting; everything in the test
// (bakes, promotions, the dashboard) reads it.
type shiftClock struct{ offset atomic.Int64 }

func (c *shiftClock) now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *shiftClock) add(d time.Duration) { c.offset.Add(int64(d)) }

// fixedClock always says t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// mustRunClock runs bakery in-process like mustRun, with the clock now.
func mustRunClock(t *testing.T, now func() time.Time, extra []string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	environ := append([]string{"PATH=" + os.Getenv("PATH")}, extra...)
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, environ: environ, now: now}
	code := e.run(context.Background(), append([]string{"bakery"}, args...))
	r := result{code, out.String(), errb.String()}
	if code != 0 {
		t.Fatalf("bakery %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, r.stdout, r.stderr)
	}
	return r
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// served is a bakery serve running in-process.
type served struct {
	url  string
	stop func() result // ends it as SIGINT does; returns what it printed
}

// startServe runs bakery serve in-process on a free loopback port with
// the clock now, and returns its URL once it listens.
func startServe(t *testing.T, now func() time.Time, extra []string, args ...string) served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var errb syncBuffer
	environ := append([]string{"PATH=" + os.Getenv("PATH")}, extra...)
	e := &env{stdin: strings.NewReader(""), stdout: pw, stderr: &errb, environ: environ, now: now}
	done := make(chan int, 1)
	go func() {
		code := e.run(ctx, append([]string{"bakery", "serve", "--addr", "127.0.0.1:0"}, args...))
		pw.Close()
		done <- code
	}()
	br := bufio.NewReader(pr)
	line, err := br.ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("bakery serve printed no address (exit %d): %v\nstderr:\n%s", <-done, err, errb.String())
	}
	var out syncBuffer
	out.Write([]byte(line))
	copied := make(chan struct{})
	go func() { io.Copy(&out, br); close(copied) }()
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "bakery dashboard: ")
	if !ok || !strings.HasPrefix(url, "http://") {
		cancel()
		t.Fatalf("bakery serve's first line %q does not give its http://HOST:PORT/ address", line)
	}
	// Listening on every interface, it is reached on loopback too.
	url = strings.Replace(url, "http://[::]:", "http://127.0.0.1:", 1)
	var once sync.Once
	var res result
	stop := func() result {
		once.Do(func() {
			cancel()
			code := <-done
			<-copied
			res = result{code, out.String(), errb.String()}
		})
		return res
	}
	t.Cleanup(func() { stop() })
	return served{url: strings.TrimSuffix(url, "/"), stop: stop}
}

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// dashProject is a project with recipes of both kinds against moto and
// an in-process registry, in the states a dashboard shows: base (an AMI)
// 1.0.0 in dev and prod with its prod fleet launched, 1.1.0 revoked; app
// (an AMI) baked from each, so 1.1.0 is tainted; hello (a container in
// the registry) 1.0.0 in dev; worker (a container) never baked, so
// outdated. It returns the environment and the -var every verb needs.
type dashProject struct {
	env  []string
	vars []string // -var base_ami=... for app
	dir  string
}

func newDashProject(t *testing.T, now func() time.Time) dashProject {
	t.Helper()
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_POLL_INTERVAL=100ms", "BAKERY_ACTOR=arn:aws:iam::123456789012:user/ann")
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"recipes/base.bake.hcl": `variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "base" {
  version = var.version
  stages  = ["dev", "prod"]
}
machine_image "base" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}
fleet "prod" {
  instance_type    = "t3.micro"
  min_size         = 1
  max_size         = 2
  desired_capacity = 1
  healthy_timeout  = "1m"
}
`,
		"recipes/app.bake.hcl": `variable "version" {
  type    = string
  default = "1.0.0"
}
variable "base_ami" {
  type = string
}
recipe "app" {
  version = var.version
  stages  = ["dev", "prod"]
}
machine_image "app" {
  region     = "us-east-1"
  source_ami = var.base_ami
}
`,
		"recipes/hello.bake.hcl": helloRecipe(host + "/team/hello"),
		"recipes/worker.bake.hcl": strings.ReplaceAll(strings.ReplaceAll(helloRecipe(host+"/team/worker"), `"hello"`, `"worker"`),
			"/app/hello", "/app/worker"),
		"recipes/app/hello":  "#!/bin/sh\necho hello\n",
		"recipes/app/worker": "#!/bin/sh\necho worker\n",
	})
	t.Chdir(dir)
	baseAMI := map[string]string{}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		var res struct {
			Artifacts []struct{ ID string }
		}
		out := mustRunClock(t, now, env, "-q", "-o", "json", "bake", "-var", "version="+v, "recipes/base.bake.hcl").stdout
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Artifacts) != 1 || res.Artifacts[0].ID == "" {
			t.Fatalf("bake base@%s: %v %q", v, err, out)
		}
		baseAMI[v] = res.Artifacts[0].ID
		mustRunClock(t, now, env, "-q", "bake", "-var", "version="+v, "-var", "base_ami="+baseAMI[v], "recipes/app.bake.hcl")
	}
	mustRunClock(t, now, env, "-q", "promote", "base@1.0.0", "--to", "dev")
	mustRunClock(t, now, env, "-q", "promote", "base@1.0.0", "--to", "prod")
	mustRunClock(t, now, env, "-q", "launch", "base", "--stage", "prod")
	mustRunClock(t, now, env, "-q", "revoke", "base@1.1.0", "--reason", "CVE-2026-1")
	mustRunClock(t, now, env, "-q", "bake", "recipes/hello.bake.hcl")
	mustRunClock(t, now, env, "-q", "promote", "hello@1.0.0", "--to", "dev")
	return dashProject{env: env, vars: []string{"-var", "base_ami=" + baseAMI["1.0.0"]}, dir: dir}
}

// jsonValue decodes a JSON document into generic values, so documents
// are compared by what they say, not by how they are spelled.
func jsonValue(t *testing.T, what, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decoding %s: %v\n%s", what, err, s)
	}
	return v
}

// jsonLines decodes one JSON document per line into a list.
func jsonLines(t *testing.T, what, s string) []any {
	t.Helper()
	out := []any{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line != "" {
			out = append(out, jsonValue(t, what, line))
		}
	}
	return out
}

func TestServeAPIServesTheDocumentsTheCLIPrints(t *testing.T) {
	clk := &shiftClock{}
	p := newDashProject(t, clk.now)
	// One instant for the CLI and the dashboard: fleets reports ages.
	at := fixedClock(clk.now())
	srv := startServe(t, at, p.env, p.vars...)
	cli := func(args ...string) string {
		t.Helper()
		var out string
		func() {
			var outb, errb bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &outb, stderr: &errb, environ: append([]string{"PATH=" + os.Getenv("PATH")}, p.env...), now: at}
			code := e.run(context.Background(), append([]string{"bakery", "-o", "json"}, args...))
			if code != 0 && !(args[0] == "outdated" && code == exitOutdated) {
				t.Fatalf("bakery %v: exit %d\n%s%s", args, code, outb.String(), errb.String())
			}
			out = outb.String()
		}()
		return out
	}
	api := func(path string) any {
		t.Helper()
		code, body := httpGet(t, srv.url+path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, code, body)
		}
		return jsonValue(t, path, body)
	}
	same := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("%s differs from the CLI's:\n got %s\nwant %s", what, g, w)
		}
	}
	status := jsonLines(t, "status", cli(append([]string{"status"}, p.vars...)...))
	if len(status) != 4 {
		t.Fatalf("status printed %d documents, want 4 (one per recipe)", len(status))
	}
	same("/api/status", api("/api/status"), any(status))
	for _, recipe := range []string{"base", "app", "hello", "worker"} {
		one := jsonLines(t, "status "+recipe, cli(append([]string{"status", recipe}, p.vars...)...))
		same("/api/status/"+recipe, api("/api/status/"+recipe), one[0])
		same("/api/history/"+recipe, api("/api/history/"+recipe), jsonValue(t, "history", cli(append([]string{"history", recipe}, p.vars...)...)))
	}
	fleets := jsonLines(t, "fleets", cli(append([]string{"fleets"}, p.vars...)...))
	same("/api/fleets", api("/api/fleets"), any(fleets))
	same("/api/fleets/base", api("/api/fleets/base"), fleets[0])
	same("/api/board", api("/api/board"), map[string]any{"status": status, "fleets": fleets})
	outdated := jsonValue(t, "outdated", cli(append([]string{"outdated"}, p.vars...)...))
	same("/api/outdated", api("/api/outdated"), outdated)

	// What the documents say, so equal documents are not equally empty.
	var base map[string]any
	for _, d := range status {
		if d.(map[string]any)["recipe"] == "base" {
			base = d.(map[string]any)
		}
	}
	if base == nil || len(base["versions"].([]any)) != 2 || base["fleets"].(map[string]any)["prod"] == nil {
		t.Errorf("status of base: %v, want 2 versions and a prod fleet", base)
	}
	var stale []string
	for _, o := range outdated.(map[string]any)["outdated"].([]any) {
		m := o.(map[string]any)
		v, _ := m["version"].(string)
		stale = append(stale, m["recipe"].(string)+"@"+v)
	}
	if want := []string{"app@1.1.0", "worker@"}; !reflect.DeepEqual(stale, want) {
		t.Errorf("outdated: %v, want %v (app 1.1.0 was baked from base 1.1.0, not from the base_ami given; worker was never baked)", stale, want)
	}
	lin := api("/api/lineage/base/1.0.0").(map[string]any)
	var ids []string
	for _, n := range lin["nodes"].([]any) {
		ids = append(ids, n.(map[string]any)["id"].(string))
	}
	if len(ids) != 3 || ids[1] != "base@1.0.0" || ids[2] != "app@1.0.0" || !strings.HasPrefix(ids[0], "ami-") {
		t.Errorf("lineage of base@1.0.0: %v, want its source AMI, itself and app@1.0.0", ids)
	}
	code, body := httpGet(t, srv.url+"/api/status/nope")
	if code != http.StatusNotFound || !strings.Contains(body, `unknown recipe \"nope\": this dashboard serves app, base, hello, worker`) {
		t.Errorf("GET /api/status/nope: %d %s", code, body)
	}
	if res := srv.stop(); res.code != 0 || !strings.Contains(res.stderr, "dashboard stopped") {
		t.Errorf("serve after its context ended: exit %d\n%s", res.code, res.stderr)
	}
}

func TestServeRefusesAnAddressOffLoopbackWithoutAToken(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"recipes/hello.bake.hcl": helloRecipe(""), "recipes/app/hello": "x"})
	t.Chdir(dir)
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		r := run(t, env, "serve", "--addr", addr)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--token") || !strings.Contains(r.stderr, dashboard.TokenEnv) || r.stdout != "" {
			t.Errorf("serve --addr %s without a token: exit %d, stdout %q, stderr %q; want exit 2 naming --token and %s", addr, r.code, r.stdout, r.stderr, dashboard.TokenEnv)
		}
	}
	// With BAKERY_TOKEN it starts, and a request needs the token.
	srv := startServe(t, time.Now, append(env, dashboard.TokenEnv+"=s3cret"))
	if code, _ := httpGet(t, srv.url+"/api/status"); code != http.StatusUnauthorized {
		t.Errorf("GET without the token: %d, want 401", code)
	}
	if code, _ := httpGet(t, srv.url+"/api/status?token=s3cret"); code != http.StatusOK {
		t.Errorf("GET with ?token=: %d, want 200", code)
	}
	if res := srv.stop(); strings.Contains(res.stdout, "s3cret") {
		t.Errorf("serve printed its token:\n%s", res.stdout)
	}
	// --token works as the variable does, off loopback too.
	srv = startServe(t, time.Now, env, "--addr", "0.0.0.0:0", "--token", "t0ken")
	if code, _ := httpGet(t, srv.url+"/api/status"); code != http.StatusUnauthorized {
		t.Errorf("GET off loopback without the token: %d, want 401", code)
	}
	if code, _ := httpGet(t, srv.url+"/api/status?token=t0ken"); code != http.StatusOK {
		t.Errorf("GET off loopback with the token: %d, want 200", code)
	}
}

func TestServeListensOnLoopbackByDefault(t *testing.T) {
	e := &env{now: time.Now}
	cmd := serveCommand(e)
	for _, f := range cmd.Flags {
		if f.Names()[0] != "addr" {
			continue
		}
		if def := f.(*ucli.StringFlag).Value; def != "127.0.0.1:8080" {
			t.Errorf("serve --addr defaults to %q, want 127.0.0.1:8080", def)
		}
		return
	}
	t.Fatal("serve has no --addr flag")
}

func TestServeStopsGracefullyOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"recipes/hello.bake.hcl": helloRecipe(""), "recipes/app/hello": "x"})
	t.Chdir(dir)
	sigs := make(chan os.Signal, 1)
	pr, pw := io.Pipe()
	var errb syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- RunWithSignals(context.Background(), sigs, []string{"bakery", "serve", "--addr", "127.0.0.1:0"}, strings.NewReader(""), pw, &errb,
			[]string{"BAKERY_HOME=" + t.TempDir()})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v\n%s", err, errb.String())
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, "bakery dashboard: "))
	if c, body := httpGet(t, url+"api/status"); c != http.StatusOK || !strings.Contains(body, `"recipe": "hello"`) {
		t.Fatalf("GET /api/status: %d %s", c, body)
	}
	sigs <- syscall.SIGTERM
	if c := <-code; c != 0 || !strings.Contains(errb.String(), "dashboard stopped") {
		t.Errorf("serve after SIGTERM: exit %d, stderr %q; want 0 and a stop notice", c, errb.String())
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the dashboard still answers after SIGTERM")
	}
}

func TestServeRefusesANegativeCache(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"recipes/hello.bake.hcl": helloRecipe(""), "recipes/app/hello": "x"})
	t.Chdir(dir)
	r := run(t, []string{"BAKERY_HOME=" + t.TempDir()}, "serve", "--addr", "127.0.0.1:0", "--cache", "-1s")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--cache must not be negative") || r.stdout != "" {
		t.Errorf("serve --cache -1s: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestServeUnknownRecipeIsAnError(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"recipes/hello.bake.hcl": helloRecipe(""), "recipes/app/hello": "x"})
	t.Chdir(dir)
	r := run(t, []string{"BAKERY_HOME=" + t.TempDir()}, "serve", "--addr", "127.0.0.1:0", "nope")
	if r.code != exitFailure || !strings.Contains(r.stderr, `unknown recipe "nope"`) || r.stdout != "" {
		t.Errorf("serve nope: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
