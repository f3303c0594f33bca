package adopt_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/adopt"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

const (
	lastRun  = "c7a4e0f2-8b3d-4f6a-a1e9-3d5c7b9f2e14"
	firstRun = "5b2f1c9e-0d4a-4c1e-9f63-2a7d8e4b1c01"
	manifest = "testdata/packer-manifest.json"
)

// TestTestdataIsPackersFormat: the committed manifests are byte for byte
// what Packer's manifest post-processor writes for what they hold (its
// ManifestFile and Artifact types, json.MarshalIndent with two spaces,
// no final newline), so the tests read the real format.
func TestTestdataIsPackersFormat(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) < 2 {
		t.Fatalf("testdata manifests: %v", files)
	}
	// Packer's own types (post-processor/manifest), field for field.
	type packerArtifactFile struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	}
	type packerArtifact struct {
		BuildName     string               `json:"name"`
		BuilderType   string               `json:"builder_type"`
		BuildTime     int64                `json:"build_time,omitempty"`
		ArtifactFiles []packerArtifactFile `json:"files"`
		ArtifactID    string               `json:"artifact_id"`
		PackerRunUUID string               `json:"packer_run_uuid"`
		CustomData    map[string]string    `json:"custom_data"`
	}
	type packerManifestFile struct {
		Builds      []packerArtifact `json:"builds"`
		LastRunUUID string           `json:"last_run_uuid"`
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var pm packerManifestFile
		if err := json.Unmarshal(data, &pm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out, err := json.MarshalIndent(pm, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Errorf("%s is not what Packer writes for it; Packer writes:\n%s", f, out)
		}
		// And bakery reads every field Packer writes.
		m, err := adopt.ReadManifest(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		mine, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mine, data) {
			t.Errorf("%s read by bakery and written again differs:\n%s", f, mine)
		}
	}
}

func TestPlanTakesTheLastRunsAMIs(t *testing.T) {
	a, err := adopt.Plan(adopt.Request{Manifest: manifest, Version: "1.0.0", Actor: "alice", Stages: 3, Tags: map[string]string{"team": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []catalogami.RegionAMI{{Region: "eu-west-1", ImageID: "ami-0fedcba9876543210"}, {Region: "us-east-1", ImageID: "ami-0123456789abcdef0"}}
	if !reflect.DeepEqual(a.AMIs, want) {
		t.Errorf("AMIs = %v, want %v (the last run's)", a.AMIs, want)
	}
	if !a.Created.Equal(time.Date(2025, 11, 28, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Created = %s, want the last build's build_time (1764288000)", a.Created)
	}
	if a.CreatedBy != "packer (amazon-ebs)" || a.Version != "1.0.0" || a.Actor != "alice" || a.Stages != 3 || a.Tags["team"] != "web" {
		t.Errorf("adoption = %+v", a)
	}
	if !strings.Contains(a.Reason, "packer build web") || !strings.Contains(a.Reason, lastRun) || !strings.Contains(a.Reason, "packer-manifest.json") {
		t.Errorf("Reason = %q, want the build, the run and the file", a.Reason)
	}
}

func TestPlanPicksARunAndAddsNamedAMIs(t *testing.T) {
	a, err := adopt.Plan(adopt.Request{Manifest: manifest, RunUUID: firstRun, Build: "web", AMIs: []string{"us-west-2:ami-0abcdef0123456789"}, Version: "0.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	want := []catalogami.RegionAMI{{Region: "us-east-1", ImageID: "ami-0a1b2c3d4e5f60718"}, {Region: "us-west-2", ImageID: "ami-0abcdef0123456789"}}
	if !reflect.DeepEqual(a.AMIs, want) {
		t.Errorf("AMIs = %v, want %v", a.AMIs, want)
	}
	if !strings.Contains(a.Reason, firstRun) || !strings.Contains(a.Reason, "--ami us-west-2:ami-0abcdef0123456789") {
		t.Errorf("Reason = %q", a.Reason)
	}
	only, err := adopt.Plan(adopt.Request{AMIs: []string{"eu-west-1:ami-0abcdef0123456789"}, Version: "0.9.0"})
	if err != nil || len(only.AMIs) != 1 || !only.Created.IsZero() || only.CreatedBy != "" {
		t.Errorf("--ami only: %+v, %v; want one AMI, no creation time or maker", only, err)
	}
}

func TestPlanRefusesBadManifests(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	twoBuilds := `{"builds":[` +
		`{"name":"a","builder_type":"amazon-ebs","artifact_id":"us-east-1:ami-0123456789abcdef0","packer_run_uuid":"r1"},` +
		`{"name":"b","builder_type":"amazon-ebs","artifact_id":"us-east-1:ami-0fedcba9876543210","packer_run_uuid":"r1"}],"last_run_uuid":"r1"}`
	for _, tc := range []struct {
		name string
		req  adopt.Request
		want []string
	}{
		{"syntax", adopt.Request{Manifest: write("syntax.json", "{\n  \"builds\": [\n    {,\n")}, []string{"syntax.json:3:6:", "invalid character ','", "not a Packer manifest"}},
		{"type", adopt.Request{Manifest: write("type.json", "{\n  \"builds\": [\n    {\"name\": 7}\n  ]\n}")}, []string{"type.json:3:14:", "builds.name", "number"}},
		{"empty file", adopt.Request{Manifest: write("empty.json", "")}, []string{"empty.json:1:1:", "unexpected end of JSON input"}},
		{"missing", adopt.Request{Manifest: filepath.Join(dir, "nope.json")}, []string{"nope.json", "no such file"}},
		{"no builds", adopt.Request{Manifest: write("none.json", `{"builds": [], "last_run_uuid": ""}`)}, []string{"none.json lists no builds", "manifest post-processor"}},
		{"docker", adopt.Request{Manifest: "testdata/packer-manifest-docker.json"}, []string{`build "web" (docker) made "sha256:3f57`, "not AMIs", "--build"}},
		{"build not found", adopt.Request{Manifest: manifest, Build: "api"}, []string{`build "api" not found in run ` + lastRun, `it has builds "web"`}},
		{"run not found", adopt.Request{Manifest: manifest, RunUUID: "0000"}, []string{`run "0000" not found`, `"` + firstRun + `", "` + lastRun + `"`, "--run-uuid"}},
		{"one region twice", adopt.Request{Manifest: write("two.json", twoBuilds)}, []string{`builds "a" and "b" of run r1 both made an AMI in us-east-1`, "--build"}},
		{"build without manifest", adopt.Request{Build: "web", AMIs: []string{"us-east-1:ami-0123456789abcdef0"}}, []string{"--packer-manifest"}},
		{"nothing", adopt.Request{}, []string{"nothing to adopt"}},
		{"bad --ami", adopt.Request{AMIs: []string{"ami-0123456789abcdef0"}}, []string{`--ami: "ami-0123456789abcdef0" is not REGION:AMI-ID`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adopt.Plan(tc.req)
			if err == nil {
				t.Fatal("Plan accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
