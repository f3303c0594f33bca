package ami

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/bakery-sh/bakery/bake/bakekey"
	"github.com/bakery-sh/bakery/recipes"
)

// hashInputs adds to k the content of every local input of provs: the
// files and folders file provisioners upload and the scripts shell
// provisioners run. A folder is walked in sorted order, adding each
// entry's path relative to the folder, its mode class (folder, regular or
// executable file, symlink and its target) and a regular file's content.
// File times, owners and other permission bits do not change the key.
func hashInputs(ctx context.Context, provs []*recipes.Provisioner, k *bakekey.Hasher) error {
	for i, p := range provs {
		label := "ami.provisioner." + strconv.Itoa(i)
		switch {
		case p.Type == "file" && p.SourcePath != "":
			k.AddString(label, "file")
			if err := hashTree(ctx, p.SourcePath, p.SourceIsDir, k); err != nil {
				return fmt.Errorf("%s: file provisioner source %s: %w", p.Pos("source"), p.Source, err)
			}
		case p.Type == "shell" && p.ScriptPath != "":
			k.AddString(label, "script")
			if err := hashFile(p.ScriptPath, k); err != nil {
				return fmt.Errorf("%s: shell provisioner script %s: %w", p.Pos("script"), p.Script, err)
			}
		}
	}
	return nil
}

// hashTree adds the file at path, or the folder's entries when isDir.
func hashTree(ctx context.Context, path string, isDir bool, k *bakekey.Hasher) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("reading it: %w; check the path in the recipe", err)
	}
	if !isDir {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file; write a folder source with a trailing \"/\"", path)
		}
		k.AddString("ami.input.entry", "."+"\x00"+modeClass(fi.Mode()))
		return hashFile(path, k)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder; write a file source without a trailing \"/\"", path)
	}
	root, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("reading it: %w", err)
	}
	var entries []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != root {
			entries = append(entries, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walking it: %w", err)
	}
	sort.Strings(entries)
	for _, p := range entries {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		li, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		switch {
		case li.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("reading %s: %w", p, err)
			}
			// A link to a regular file is uploaded as that file: its
			// content decides the image. Other links count by target.
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				k.AddString("ami.input.entry", rel+"\x00"+modeClass(fi.Mode()))
				if err := hashFile(p, k); err != nil {
					return err
				}
				continue
			}
			k.AddString("ami.input.entry", rel+"\x00l\x00"+filepath.ToSlash(target))
		case li.IsDir():
			k.AddString("ami.input.entry", rel+"\x00d")
		case li.Mode().IsRegular():
			k.AddString("ami.input.entry", rel+"\x00"+modeClass(li.Mode()))
			if err := hashFile(p, k); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is a special file (%s): only regular files, folders and symlinks can be uploaded; remove it", p, li.Mode().Type())
		}
	}
	return nil
}

// modeClass is "x" for a file with any execute bit set, "f" otherwise.
func modeClass(m fs.FileMode) string {
	if m&0o111 != 0 {
		return "x"
	}
	return "f"
}

// hashFile adds the content of the regular file at path.
func hashFile(path string, k *bakekey.Hasher) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading it: %w; check the path in the recipe", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if err := k.AddReader("ami.input.content", fi.Size(), f); err != nil {
		return fmt.Errorf("reading %s: %w (did it change while bakery read it?)", path, err)
	}
	return nil
}
