// Package archtest holds the test that enforces DESIGN.md's import rules:
// bake, promote, launch, retire and adopt do not import each other (they meet in
// catalog), the catalog and recipe packages import none of the verbs, and
// only cmd/bakery imports the CLI.
package archtest
