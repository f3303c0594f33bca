package bake

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bakery-sh/bakery/recipes"
)

// Selection picks the blocks of recipes to bake by their labels, as
// Packer's -only and -except pick builds: with Only, just the container
// and machine_image blocks named there; with Except, every block but
// those. A name picks every block with that label (a container and a
// machine_image may share one). An entry may hold several names separated
// by commas ("web,api"). The zero Selection picks every block.
type Selection struct {
	// Only names the blocks to bake; empty means every block.
	Only []string
	// Except names blocks not to bake.
	Except []string
}

// Apply returns rs narrowed to the selected blocks: every recipe a
// shallow copy holding only its selected blocks, in file order, and the
// recipes left with none dropped. rs is not changed. It fails, listing
// the blocks the recipes have, when a name is no block of any recipe in
// rs; it also fails when both Only and Except are set, or when Except
// leaves nothing to bake.
func (s Selection) Apply(rs []*recipes.Recipe) ([]*recipes.Recipe, error) {
	only, except := names(s.Only), names(s.Except)
	if len(only) == 0 && len(except) == 0 {
		return rs, nil
	}
	if len(only) > 0 && len(except) > 0 {
		return nil, errors.New("selecting blocks: name the blocks to bake or the blocks to skip, not both")
	}
	known := blockNames(rs)
	var unknown []string
	for _, n := range append(slices.Clone(only), except...) {
		if !slices.Contains(known, n) && !slices.Contains(unknown, n) {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("selecting blocks: no container or machine_image block is named %s; the recipes' blocks are %s",
			quoteAll(unknown), strings.Join(known, ", "))
	}
	picked := func(name string) bool {
		if len(only) > 0 {
			return slices.Contains(only, name)
		}
		return !slices.Contains(except, name)
	}
	var out []*recipes.Recipe
	for _, r := range rs {
		cp := *r
		cp.Containers, cp.MachineImages = nil, nil
		for _, c := range r.Containers {
			if picked(c.Name) {
				cp.Containers = append(cp.Containers, c)
			}
		}
		for _, m := range r.MachineImages {
			if picked(m.Name) {
				cp.MachineImages = append(cp.MachineImages, m)
			}
		}
		if len(cp.Containers)+len(cp.MachineImages) > 0 {
			out = append(out, &cp)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("selecting blocks: skipping %s leaves nothing to bake; the recipes' blocks are %s",
			quoteAll(except), strings.Join(known, ", "))
	}
	return out, nil
}

// SplitNames returns the names in list as --only and --except take
// them: each entry split at commas, without spaces, empty names and
// repeats.
func SplitNames(list []string) []string { return names(list) }

// names returns the names in list, each entry split at commas (block
// labels hold none), without spaces around them, empty names and repeats.
func names(list []string) []string {
	var out []string
	for _, entry := range list {
		for n := range strings.SplitSeq(entry, ",") {
			if n = strings.TrimSpace(n); n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// blockNames returns the labels of every block of rs, each once, in
// file order (containers first in each recipe, as they bake).
func blockNames(rs []*recipes.Recipe) []string {
	var out []string
	for _, r := range rs {
		for _, c := range r.Containers {
			if !slices.Contains(out, c.Name) {
				out = append(out, c.Name)
			}
		}
		for _, m := range r.MachineImages {
			if !slices.Contains(out, m.Name) {
				out = append(out, m.Name)
			}
		}
	}
	return out
}

// quoteAll returns the names quoted and joined with ", ".
func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, n := range list {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
