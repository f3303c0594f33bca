package oci

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSkopeoReadsLayout checks the layout against an independent reader:
// `skopeo inspect --raw oci:DIR:NAME:TAG` and `skopeo copy` must find the
// image by its ref name.
func TestSkopeoReadsLayout(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		needPeer(t, "skopeo is not installed")
	}
	dir := t.TempDir()
	l := openLayout(t, dir)
	img := withPlatform(t, randomImage(t, bakeAnnotations), "amd64")
	bakeInto(t, l, "hello:1.1.0", img)
	bakeInto(t, l, "other:2", withPlatform(t, randomImage(t, nil), "amd64"))

	out, err := exec.Command(skopeo, "inspect", "--raw", "oci:"+dir+":hello:1.1.0").Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v: %s", err, stderr(err))
	}
	raw, _ := img.RawManifest()
	if !bytes.Equal(bytes.TrimSpace(out), bytes.TrimSpace(raw)) {
		t.Errorf("skopeo read manifest\n%s\nwant\n%s", out, raw)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(skopeo, "copy", "--quiet", "oci:"+dir+":hello:1.1.0", "oci:"+dst+":copied:1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v: %s", err, out)
	}
	validateLayout(t, dst)
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
