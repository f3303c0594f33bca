package recipes

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// checkVersionNotStage reports a version that is also one of the
// recipe's stage names: the image's version tag and the stage's tag
// would be the same tag, and a promotion would move the version.
func (s *state) checkVersionNotStage(r *Recipe) {
	if r.Version == "" || !slices.Contains(r.Stages, r.Version) {
		return
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("version %q is also a stage name", r.Version),
		Detail: fmt.Sprintf("A version and a stage are both tags of the image: version %q would be the tag that promotion moves to the image in stage %q. "+
			"Give the recipe a version that is no stage name, such as \"1.0.0\".", r.Version, r.Version),
		Subject: r.VersionRange.Ptr(),
	})
}

// CheckSet checks what Load cannot see in one recipe file, for
// `bakery validate`: two files that define the same recipe name (bakery
// would not know which stages and artifacts the name means), and layer
// source folders holding files a layer cannot hold (named pipes,
// sockets, devices: a bake would stop at them), and links between
// recipes ("recipe:NAME" bases) that name no recipe of rs (or of
// outside, the other recipes of their folders) or form a cycle. Each problem is an error
// diagnostic pointing at the second recipe block or at the layer source.
func CheckSet(rs []*Recipe, outside ...*Recipe) hcl.Diagnostics {
	var diags hcl.Diagnostics
	first := map[string]*Recipe{}
	for _, r := range rs {
		if f, dup := first[r.Name]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("recipe %q is defined twice", r.Name),
				Detail: fmt.Sprintf("Recipe %q is also defined at %s. A recipe name names one recipe: bakery finds images, stages and history by it. Rename one of them.",
					r.Name, posString(f.DeclRange)),
				Subject: r.DeclRange.Ptr(),
			})
			continue
		}
		first[r.Name] = r
	}
	if len(diags) == 0 { // links need unique names
		_, linkDiags := LinkGraph(rs, outside...)
		diags = append(diags, linkDiags...)
	}
	for _, r := range rs {
		for _, c := range r.Containers {
			for _, l := range c.Layers {
				if l.Kind == SourceDir {
					diags = append(diags, specialFiles(l)...)
				}
			}
		}
	}
	return diags
}

// specialFiles reports the files under a layer's source folder that are
// neither regular files, folders nor symlinks.
func specialFiles(l *Layer) hcl.Diagnostics {
	var diags hcl.Diagnostics
	root := l.Path
	if p, err := filepath.EvalSymlinks(root); err == nil {
		root = p
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("reading layer source %q: %v", l.Source, err),
				Detail:   "Check the folder's permissions: a bake reads every file in it.",
				Subject:  l.SourceRange.Ptr(),
			})
			return nil
		}
		t := d.Type()
		if p == root || t.IsDir() || t.IsRegular() || t&fs.ModeSymlink != 0 {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("layer source %q holds %s: %s", l.Source, DescribeFileMode(t), filepath.ToSlash(rel)),
			Detail:   "A layer holds only regular files, folders and symlinks: remove it from the source folder (or bake from a folder without it).",
			Subject:  l.SourceRange.Ptr(),
		})
		return nil
	})
	return diags
}

// DescribeFileMode names the type of a file with mode m for messages: "a
// folder", "a named pipe (fifo)", "a socket", "a character device", "a
// block device", "a symlink", else "a special file" (or "a file").
func DescribeFileMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (fifo)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsRegular():
		return "a file"
	default:
		return "a special file"
	}
}
