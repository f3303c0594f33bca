package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/recipes"
)

func fmtCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "fmt",
		Usage:     "rewrite recipe files in canonical HCL format",
		ArgsUsage: "[FILE|FOLDER|-]...",
		Description: "Formats *.bake.hcl and *.vars.hcl files (default: the current folder).\n" +
			"'-' reads standard input and writes the result to standard output.\n" +
			"With -check nothing is written and the exit code is 3 if any file\n" +
			"needs formatting (as packer fmt -check), for CI. A file that is not\n" +
			"valid HCL is never rewritten: its errors are printed (FILE:LINE,COL)\n" +
			"and the exit code is 1.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "check", Usage: "only check; exit 3 if any file is not formatted"},
			&ucli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "also format files in subfolders"},
		},
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			args := c.Args().Slice()
			if len(args) == 0 {
				args = []string{"."}
			}
			check := c.Bool("check")
			doc := fmtDoc{Check: check, Files: []fmtFile{}}
			loader := recipes.NewLoader()
			invalid := 0
			// report prints what one file's formatting found.
			report := func(f fmtFile, diags hcl.Diagnostics) error {
				if len(diags) > 0 {
					if err := e.writeDiagnostics(loader, diags, g); err != nil {
						return err
					}
				}
				if !f.Valid {
					invalid++
				}
				doc.Files = append(doc.Files, f)
				if !f.Formatted && f.Valid && f.File != "-" && !g.json {
					fmt.Fprintln(e.stdout, f.File)
				}
				return nil
			}
			for _, a := range args {
				if a == "-" {
					src, err := io.ReadAll(e.stdin)
					if err != nil {
						return fmt.Errorf("reading standard input: %w", err)
					}
					out, diags := loader.Format("<stdin>", src)
					f := fmtFile{File: "-", Valid: !diags.HasErrors(), Formatted: out != nil && bytes.Equal(src, out)}
					if f.Valid && !check {
						if g.json {
							f.Output = string(out)
						} else if _, err := e.stdout.Write(out); err != nil {
							return fmt.Errorf("writing standard output: %w", err)
						}
					}
					if err := report(f, diags); err != nil {
						return err
					}
					continue
				}
				files, err := hclFiles(a, c.Bool("recursive"))
				if err != nil {
					return err
				}
				for _, path := range files {
					f, diags, err := formatFile(loader, path, check)
					if err != nil {
						return err
					}
					if err := report(f, diags); err != nil {
						return err
					}
				}
			}
			unformatted := 0
			for _, f := range doc.Files {
				if f.Valid && !f.Formatted {
					unformatted++
				}
			}
			if g.json {
				if err := json.NewEncoder(e.stdout).Encode(doc); err != nil {
					return fmt.Errorf("writing JSON output: %w", err)
				}
			}
			if invalid > 0 {
				e.noteFailure("%d file(s) are not valid HCL and were left as they are; fix the errors above and run bakery fmt again", invalid)
				return exitError{exitFailure}
			}
			if check && unformatted > 0 {
				fmt.Fprintf(e.stderr, "bakery: %d file(s) need formatting; run 'bakery fmt' to fix them\n", unformatted)
				return exitError{exitUnformat}
			}
			return nil
		},
	})
}

// fmtDoc is the JSON document fmt prints.
type fmtDoc struct {
	// Check is true with -check: nothing was written.
	Check bool `json:"check"`
	// Files are the files read, in order ("-" for standard input).
	Files []fmtFile `json:"files"`
}

// fmtFile is what fmt found in one file.
type fmtFile struct {
	File string `json:"file"`
	// Valid is false when the file is not valid HCL: it is left as it
	// is, and the error document says why.
	Valid bool `json:"valid"`
	// Formatted is true when the file was already in canonical layout.
	Formatted bool `json:"formatted"`
	// Written is true when fmt rewrote the file.
	Written bool `json:"written"`
	// Output is the formatted text of standard input ("-").
	Output string `json:"output,omitempty"`
}

// hclFiles lists the recipe and variable files at path.
func hclFiles(path string, recursive bool) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("formatting %s: %w", path, err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".bake.hcl") || strings.HasSuffix(p, ".vars.hcl") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing recipe files in %s: %w", path, err)
	}
	return files, nil
}

// formatFile formats one file in place (atomically) unless check is set
// or it is not valid HCL (then diags say why and nothing is written).
func formatFile(loader *recipes.Loader, path string, check bool) (fmtFile, hcl.Diagnostics, error) {
	f := fmtFile{File: path}
	src, err := os.ReadFile(path)
	if err != nil {
		return f, nil, fmt.Errorf("formatting %s: %w", path, err)
	}
	out, diags := loader.Format(path, src)
	if diags.HasErrors() {
		return f, diags, nil
	}
	f.Valid = true
	if bytes.Equal(src, out) {
		f.Formatted = true
		return f, diags, nil
	}
	if check {
		return f, diags, nil
	}
	if err := writeAtomically(path, out); err != nil {
		return f, diags, fmt.Errorf("formatting %s: %w", path, err)
	}
	f.Written = true
	return f, diags, nil
}

// writeAtomically replaces the file at path with data, keeping its mode.
func writeAtomically(path string, data []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
