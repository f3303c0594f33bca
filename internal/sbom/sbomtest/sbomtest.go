// Package sbomtest validates bakery's SBOMs and provenance statements in
// tests with tools bakery's authors did not write: the spdx-tools
// validator (pyspdxtools) and the in-toto attestation spec's Python
// bindings, both pinned in the project's virtualenv by
// scripts/sbom-venv.sh (make deps).
package sbomtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// venvBin returns the path of a program in the project's virtualenv
// (<repo>/.venv/bin, or $BAKERY_VENV/bin). Without it the test fails
// when CI is set and is skipped otherwise.
func venvBin(t testing.TB, prog string) string {
	t.Helper()
	dirs := []string{}
	if v := os.Getenv("BAKERY_VENV"); v != "" {
		dirs = append(dirs, v)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dirs = append(dirs, filepath.Join(d, ".venv"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "bin", prog)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	missing(t, prog)
	return ""
}

// missing fails the test when CI is set and skips it otherwise.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI: run scripts/sbom-venv.sh (make deps) to install it into .venv", what)
	}
	t.Skipf("%s not installed: run scripts/sbom-venv.sh (make deps)", what)
}

// SPDX validates an SPDX JSON document with spdx-tools' pyspdxtools and
// returns its complaint, or "" when the document is valid.
func SPDX(t testing.TB, doc []byte) string {
	t.Helper()
	tool := venvBin(t, "pyspdxtools")
	f := filepath.Join(t.TempDir(), "sbom.spdx.json")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "-i", f).CombinedOutput()
	if err != nil {
		if len(out) == 0 {
			return err.Error()
		}
		return string(out)
	}
	return ""
}

// inTotoCheck parses a statement with the in-toto attestation bindings
// (unknown fields are errors), validates it and its resource
// descriptors, and parses the predicate as SLSA provenance v1.
const inTotoCheck = `
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

doc = json.load(open(sys.argv[1]))
pb = json_format.ParseDict(doc, statement_pb2.Statement())
Statement.copy_from_pb(pb).validate()
if pb.predicate_type != "https://slsa.dev/provenance/v1":
    raise ValueError("predicateType is %r" % pb.predicate_type)
prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
if not prov.build_definition.build_type:
    raise ValueError("buildDefinition.buildType is missing")
if not prov.run_details.builder.id:
    raise ValueError("runDetails.builder.id is missing")
for rd in prov.build_definition.resolved_dependencies:
    ResourceDescriptor.copy_from_pb(rd).validate()
print("ok")
`

// InToto validates an in-toto statement with SLSA provenance v1 with the
// in-toto attestation bindings and returns their complaint, or "".
func InToto(t testing.TB, doc []byte) string {
	t.Helper()
	py := venvBin(t, "python")
	dir := t.TempDir()
	f := filepath.Join(dir, "statement.json")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "check.py")
	if err := os.WriteFile(script, []byte(inTotoCheck), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(py, "-c", "import in_toto_attestation").Run(); err != nil {
		missing(t, "the in-toto-attestation package in "+py)
	}
	out, err := exec.Command(py, script, f).CombinedOutput()
	if err != nil {
		return string(out) + err.Error()
	}
	return ""
}
