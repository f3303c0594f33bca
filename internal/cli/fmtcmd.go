package cli

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
			"needs formatting (as packer fmt -check), for CI.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "check", Usage: "only check; exit 3 if any file is not formatted"},
			&ucli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "also format files in subfolders"},
		},
		Action: func(c *ucli.Context) error {
			args := c.Args().Slice()
			if len(args) == 0 {
				args = []string{"."}
			}
			check := c.Bool("check")
			var unformatted []string
			for _, a := range args {
				if a == "-" {
					src, err := io.ReadAll(e.stdin)
					if err != nil {
						return fmt.Errorf("reading standard input: %w", err)
					}
					out := recipes.Format(src)
					if check {
						if !bytes.Equal(src, out) {
							unformatted = append(unformatted, "-")
						}
						continue
					}
					if _, err := e.stdout.Write(out); err != nil {
						return fmt.Errorf("writing standard output: %w", err)
					}
					continue
				}
				files, err := hclFiles(a, c.Bool("recursive"))
				if err != nil {
					return err
				}
				for _, f := range files {
					changed, err := formatFile(f, check)
					if err != nil {
						return err
					}
					if changed {
						unformatted = append(unformatted, f)
						fmt.Fprintln(e.stdout, f)
					}
				}
			}
			if check && len(unformatted) > 0 {
				fmt.Fprintf(e.stderr, "bakery: %d file(s) need formatting; run 'bakery fmt' to fix them\n", len(unformatted))
				return exitError{exitUnformat}
			}
			return nil
		},
	})
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

// formatFile formats one file in place (atomically) unless check is set,
// and reports whether it was not already formatted.
func formatFile(path string, check bool) (bool, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("formatting %s: %w", path, err)
	}
	out := recipes.Format(src)
	if bytes.Equal(src, out) {
		return false, nil
	}
	if check {
		return true, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("formatting %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fmt-*")
	if err != nil {
		return false, fmt.Errorf("formatting %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return false, fmt.Errorf("formatting %s: %w", path, err)
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return false, fmt.Errorf("formatting %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("formatting %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("formatting %s: %w", path, err)
	}
	return true, nil
}
