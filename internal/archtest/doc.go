// Package archtest holds the test that enforces DESIGN.md's import rules:
// bake, promote, launch, retire and adopt do not import each other (they meet in
// catalog), the catalog and recipe packages import none of the verbs, and
// only cmd/bakery imports the CLI; and the test of the script that runs
// the fuzz targets in make test (scripts/fuzz-target.sh).
package archtest
