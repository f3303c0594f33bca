package recipes

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// local is one attribute of a locals block.
type local struct {
	name string
	attr *hcl.Attribute
	deps []string // names of the locals it refers to, in source order
}

// evalLocals evaluates every locals block attribute, in dependency order
// (a local may refer to locals declared later or in another block), and
// returns the object bound to "local". Locals caught in a reference cycle
// or whose expression fails are unknown, so that no further errors
// cascade from them.
func (s *state) evalLocals(blocks []*hcl.Block) cty.Value {
	var order []*local
	byName := make(map[string]*local)
	for _, b := range blocks {
		attrMap, diags := b.Body.JustAttributes()
		s.addAll(diags)
		attrs := make([]*hcl.Attribute, 0, len(attrMap))
		for _, a := range attrMap {
			attrs = append(attrs, a)
		}
		sort.Slice(attrs, func(i, j int) bool { return attrs[i].NameRange.Start.Byte < attrs[j].NameRange.Start.Byte })
		for _, a := range attrs {
			if first, dup := byName[a.Name]; dup {
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("duplicate local value %q", a.Name),
					Detail: fmt.Sprintf("local.%s is first defined at %s; each local value is defined once across all locals blocks.",
						a.Name, posString(first.attr.NameRange)),
					Subject: a.NameRange.Ptr(),
				})
				continue
			}
			l := &local{name: a.Name, attr: a}
			byName[a.Name] = l
			order = append(order, l)
		}
	}
	for _, l := range order {
		seen := make(map[string]bool)
		for _, tr := range l.attr.Expr.Variables() {
			if tr.RootName() != "local" || len(tr) < 2 {
				continue
			}
			step, ok := tr[1].(hcl.TraverseAttr)
			if !ok || byName[step.Name] == nil || seen[step.Name] {
				continue
			}
			seen[step.Name] = true
			l.deps = append(l.deps, step.Name)
		}
	}

	const (
		unvisited = iota
		visiting
		done
	)
	mark := make(map[string]int)
	cyclic := make(map[string]bool)
	vals := make(map[string]cty.Value)
	var stack []string
	var visit func(l *local)
	visit = func(l *local) {
		mark[l.name] = visiting
		stack = append(stack, l.name)
		for _, d := range l.deps {
			switch mark[d] {
			case unvisited:
				visit(byName[d])
			case visiting:
				i := len(stack) - 1
				for stack[i] != d {
					i--
				}
				cycle := append(append([]string(nil), stack[i:]...), d)
				s.reportCycle(byName[d], cycle)
				for _, n := range stack[i:] {
					cyclic[n] = true
				}
			}
		}
		stack = stack[:len(stack)-1]
		mark[l.name] = done
		if cyclic[l.name] {
			vals[l.name] = cty.DynamicVal
			return
		}
		ctx := s.ctx.NewChild()
		ctx.Variables = map[string]cty.Value{"local": cty.ObjectVal(copyVals(vals))}
		val, diags := l.attr.Expr.Value(ctx)
		s.addAll(diags)
		if diags.HasErrors() {
			val = cty.DynamicVal
		}
		vals[l.name] = val
	}
	for _, l := range order {
		if mark[l.name] == unvisited {
			visit(l)
		}
	}
	return cty.ObjectVal(vals)
}

func (s *state) reportCycle(first *local, cycle []string) {
	refs := make([]string, len(cycle))
	for i, n := range cycle {
		refs[i] = "local." + n
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "local values refer to each other in a cycle",
		Detail: fmt.Sprintf("%s: a local value cannot depend on itself. Compute one of them from variables or literals instead.",
			strings.Join(refs, " → ")),
		Subject: first.attr.Range.Ptr(),
	})
}

func copyVals(m map[string]cty.Value) map[string]cty.Value {
	out := make(map[string]cty.Value, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
