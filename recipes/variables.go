package recipes

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
)

// sensitiveMark marks the values of variables declared sensitive, so that
// HCL's diagnostic writer does not print them.
const sensitiveMark = "sensitive"

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"},
		{Name: "default"},
		{Name: "description"},
		{Name: "sensitive"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition"},
		{Name: "error_message"},
	},
}

// variable is a declared input variable and, once assigned, its value.
type variable struct {
	name        string
	ty          cty.Type
	defaults    *typeexpr.Defaults
	description string
	sensitive   bool
	validations []*validation
	declRange   hcl.Range
	// broken is set when the declaration itself has errors; its value is
	// then unknown so that no further errors cascade from it.
	broken bool

	set      bool      // some source gave a value
	failed   bool      // the last value given was invalid
	value    cty.Value // the last valid value
	source   string    // where value came from, for messages
	srcRange hcl.Range // where value is written
	// texts are the strings and numbers of every value given to the
	// variable, valid or not, and the raw text of those given as text:
	// what must not be printed when the variable is sensitive.
	texts []string
}

// given records the text of a value given to v, for SensitiveValues.
func (v *variable) given(val cty.Value) {
	v.texts = append(v.texts, valueTexts(val)...)
}

// valueTexts returns every string and number in val, as text.
func valueTexts(val cty.Value) []string {
	var out []string
	_ = cty.Walk(val, func(_ cty.Path, val cty.Value) (bool, error) {
		val, _ = val.Unmark()
		if val.IsNull() || !val.IsKnown() {
			return false, nil
		}
		switch val.Type() {
		case cty.String:
			out = append(out, val.AsString())
		case cty.Number:
			out = append(out, val.AsBigFloat().Text('f', -1))
		}
		return true, nil
	})
	return out
}

type validation struct {
	condition    hcl.Expression
	errorMessage hcl.Expression
}

// convert applies optional-attribute defaults and converts val to the
// declared type.
func (v *variable) convert(val cty.Value) (cty.Value, error) {
	if v.defaults != nil {
		val = v.defaults.Apply(val)
	}
	return convert.Convert(val, v.ty)
}

// typeString describes the declared type for messages.
func (v *variable) typeString() string {
	if v.ty == cty.DynamicPseudoType {
		return "any"
	}
	return typeexpr.TypeString(v.ty)
}

func (s *state) declareVariables(blocks []*hcl.Block, funcs map[string]function.Function) {
	defaultCtx := &hcl.EvalContext{Functions: funcs}
	for _, b := range blocks {
		name := b.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("invalid variable name %q", name),
				Detail:   "A variable name starts with a letter or underscore and holds only letters, digits, underscores and dashes.",
				Subject:  b.LabelRanges[0].Ptr(),
			})
			continue
		}
		if first, dup := s.varByID[name]; dup {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("duplicate variable block %q", name),
				Detail: fmt.Sprintf("Variable %q is first declared at %s; remove one of the two declarations.",
					name, posString(first.declRange)),
				Subject: b.DefRange.Ptr(),
			})
			continue
		}
		s.loader.declare(name)
		v := &variable{name: name, ty: cty.DynamicPseudoType, declRange: b.DefRange}
		s.vars = append(s.vars, v)
		s.varByID[name] = v

		content, diags := b.Body.Content(variableSchema)
		s.addAll(diags)

		if attr := content.Attributes["type"]; attr != nil {
			ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(attr.Expr)
			s.addAll(diags)
			if diags.HasErrors() {
				v.broken = true
			} else {
				v.ty, v.defaults = ty, defaults
			}
		}
		if attr := content.Attributes["description"]; attr != nil {
			if str, ok := s.literalString(attr, defaultCtx); ok {
				v.description = str
			}
		}
		if attr := content.Attributes["sensitive"]; attr != nil {
			val, diags := attr.Expr.Value(defaultCtx)
			s.addAll(diags)
			if !diags.HasErrors() {
				b, err := convert.Convert(val, cty.Bool)
				if err != nil || b.IsNull() {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "invalid type for \"sensitive\"",
						Detail:   "Expected true or false.",
						Subject:  attr.Expr.Range().Ptr(),
					})
				} else {
					v.sensitive = b.True()
				}
			}
		}
		if attr := content.Attributes["default"]; attr != nil {
			val, diags := attr.Expr.Value(defaultCtx)
			v.given(val)
			s.addAll(diags)
			switch {
			case diags.HasErrors():
				v.broken = true
			case v.broken:
			case val.IsNull():
				// "default = null" declares an optional variable whose
				// value is null, as in Terraform.
				v.set, v.value, v.source, v.srcRange = true, cty.NullVal(v.ty), "its default", attr.Expr.Range()
			default:
				conv, err := v.convert(val)
				if err != nil {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("invalid default value for variable %q", name),
						Detail: fmt.Sprintf("Variable %q is declared as %s: %s. Change the default or the type.",
							name, v.typeString(), convertErrorString(err)),
						Subject: attr.Expr.Range().Ptr(),
					})
					v.broken = true
				} else {
					v.set, v.value, v.source, v.srcRange = true, conv, "its default", attr.Expr.Range()
				}
			}
		}
		for _, vb := range content.Blocks {
			vc, diags := vb.Body.Content(validationSchema)
			s.addAll(diags)
			cond, msg := vc.Attributes["condition"], vc.Attributes["error_message"]
			for _, missing := range []struct {
				name string
				attr *hcl.Attribute
				hint string
			}{
				{"condition", cond, fmt.Sprintf("condition = length(var.%s) > 0", name)},
				{"error_message", msg, "error_message = \"Explain what a valid value looks like.\""},
			} {
				if missing.attr == nil {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("missing required argument %q", missing.name),
						Detail:   fmt.Sprintf("A validation block needs a condition and an error_message, for example: %s.", missing.hint),
						Subject:  vb.DefRange.Ptr(),
					})
				}
			}
			if cond != nil && msg != nil {
				v.validations = append(v.validations, &validation{condition: cond.Expr, errorMessage: msg.Expr})
			}
		}
	}
}

// literalString evaluates attr, which must be a string.
func (s *state) literalString(attr *hcl.Attribute, ctx *hcl.EvalContext) (string, bool) {
	val, diags := attr.Expr.Value(ctx)
	s.addAll(diags)
	if diags.HasErrors() {
		return "", false
	}
	val, _ = val.UnmarkDeep()
	if !val.IsKnown() {
		return "", false
	}
	if val.IsNull() || val.Type() != cty.String {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("invalid type for %q", attr.Name),
			Detail:   fmt.Sprintf("Expected a string, got %s.", typeName(val)),
			Subject:  attr.Expr.Range().Ptr(),
		})
		return "", false
	}
	return val.AsString(), true
}

// assignVariables applies, in increasing precedence, the defaults (already
// set by declareVariables), BAKERY_VAR_ environment variables, var files
// in order and -var assignments, then reports variables left without a value.
func (s *state) assignVariables() {
	for _, kv := range s.opts.Env {
		k, raw, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvVarPrefix) {
			continue
		}
		// Undeclared BAKERY_VAR_ variables are ignored, as Packer does with
		// PKR_VAR_: one environment serves many recipes.
		if v := s.varByID[strings.TrimPrefix(k, EnvVarPrefix)]; v != nil {
			s.setRaw(v, raw, "<env "+k+">", "the environment variable "+k)
		}
	}
	for _, path := range s.opts.VarFiles {
		s.loadVarFile(path)
	}
	names := make([]string, 0, len(s.opts.Vars))
	for k := range s.opts.Vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		raw := s.opts.Vars[k]
		fname := "<-var " + k + ">"
		v := s.varByID[k]
		if v == nil && s.opts.SharedVars {
			continue // another recipe may declare it: Loader.CheckVars
		}
		if v == nil {
			s.loader.addFile(fname, &hcl.File{Bytes: []byte(raw)})
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("undeclared variable %q", k),
				Detail:   fmt.Sprintf("-var %s=... sets a variable that %s does not declare%s. Declare it with a variable block, or drop the -var.", k, s.name, s.didYouMean(k)),
				Subject:  textRange(fname, raw).Ptr(),
			})
			continue
		}
		s.setRaw(v, raw, fname, "-var "+k)
	}
	for _, v := range s.vars {
		if !v.set && !v.broken && s.opts.Scope != ScopeAll {
			// Unknown; checkNeeded reports it where it is needed.
			s.missing[v.name] = true
			continue
		}
		if !v.set && !v.broken {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("no value for required variable %q", v.name),
				Detail: fmt.Sprintf("Variable %q has no default. Set it with -var %s=..., in a -var-file (%s = ...), or with the environment variable %s%s=..., or give it a default.",
					v.name, v.name, v.name, EnvVarPrefix, v.name),
				Subject: v.declRange.Ptr(),
			})
		}
	}
}

func (s *state) didYouMean(name string) string {
	names := make([]string, 0, len(s.vars))
	for _, v := range s.vars {
		names = append(names, v.name)
	}
	if sug := suggest(name, names); sug != "" {
		return fmt.Sprintf(" (did you mean %q?)", sug)
	}
	return ""
}

// setRaw assigns a value given as raw text (-var or environment). The
// text is registered as a pseudo-file named fname so that diagnostics
// about it show it.
func (s *state) setRaw(v *variable, raw, fname, source string) {
	v.texts = append(v.texts, raw)
	s.loader.addFile(fname, &hcl.File{Bytes: []byte(raw)})
	rng := textRange(fname, raw)
	if v.ty.IsPrimitiveType() || v.ty == cty.DynamicPseudoType {
		s.setValue(v, cty.StringVal(raw), rng, source)
		return
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), fname, hcl.InitialPos)
	if !diags.HasErrors() {
		var more hcl.Diagnostics
		var val cty.Value
		val, more = expr.Value(nil)
		diags = append(diags, more...)
		if !diags.HasErrors() {
			s.setValue(v, val, rng, source)
			return
		}
	}
	for _, d := range diags {
		detail := strings.TrimSuffix(d.Summary, ".") + "."
		if d.Detail != "" {
			detail += " " + d.Detail
		}
		d.Detail = detail + fmt.Sprintf(" Variable %q is declared as %s, so the value from %s is read as an HCL expression: quote every string in it, as in %s.",
			v.name, v.typeString(), source, rawExample(v, source))
		d.Summary = fmt.Sprintf("invalid value for variable %q", v.name)
	}
	s.addAll(diags)
	v.set, v.failed = true, true
}

// rawExample shows how to write a value of v's type from source (a -var
// or an environment variable), quoted for a shell.
func rawExample(v *variable, source string) string {
	val := `["a", "b"]`
	if v.ty.IsMapType() || v.ty.IsObjectType() {
		val = `{ k = "v" }`
	}
	if env, ok := strings.CutPrefix(source, "the environment variable "); ok {
		return fmt.Sprintf("%s='%s'", env, val)
	}
	return fmt.Sprintf("-var '%s=%s'", v.name, val)
}

// setValue converts val to v's type and, if that works, makes it v's value.
func (s *state) setValue(v *variable, val cty.Value, rng hcl.Range, source string) {
	v.set = true
	v.given(val)
	if v.broken {
		return
	}
	conv, err := v.convert(val)
	if err != nil {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("invalid value for variable %q", v.name),
			Detail: fmt.Sprintf("Variable %q is declared as %s, but the value from %s does not conform: %s.",
				v.name, v.typeString(), source, convertErrorString(err)),
			Subject: rng.Ptr(),
		})
		v.failed = true
		return
	}
	v.failed, v.value, v.source, v.srcRange = false, conv, source, rng
}

func (s *state) loadVarFile(path string) {
	src, err := os.ReadFile(path)
	if err != nil {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("reading var file: %v", err),
			Detail:   "Check the -var-file path; it is relative to the current directory.",
		})
		return
	}
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(strings.ToLower(path), ".json") {
		f, diags = hcljson.Parse(src, path)
	} else {
		f, diags = hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	}
	if f != nil && f.Bytes == nil {
		f.Bytes = src
	}
	s.loader.addFile(path, f)
	s.addAll(diags)
	if diags.HasErrors() {
		return
	}
	attrMap, diags := f.Body.JustAttributes()
	s.addAll(diags)
	attrs := make([]*hcl.Attribute, 0, len(attrMap))
	for _, a := range attrMap {
		attrs = append(attrs, a)
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].NameRange.Start.Byte < attrs[j].NameRange.Start.Byte })
	for _, a := range attrs {
		v := s.varByID[a.Name]
		if v == nil && s.opts.SharedVars {
			continue // another recipe may declare it: Loader.CheckVars
		}
		if v == nil {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("undeclared variable %q", a.Name),
				Detail: fmt.Sprintf("This var file sets a variable that %s does not declare%s. Declare it with a variable block, or remove it from %s.",
					s.name, s.didYouMean(a.Name), path),
				Subject: a.NameRange.Ptr(),
			})
			continue
		}
		val, diags := a.Expr.Value(nil)
		s.addAll(diags)
		if diags.HasErrors() {
			// The value is not printed: its source text is masked.
			v.texts = append(v.texts, strings.Trim(string(a.Expr.Range().SliceBytes(f.Bytes)), `"`))
			v.set, v.failed = true, true
			continue
		}
		s.setValue(v, val, a.Expr.Range(), "var file "+path)
	}
}

// variableObject returns the object bound to "var", after running every
// variable's validation rules. Variables without a usable value are
// unknown, so expressions that use them produce no further errors.
func (s *state) variableObject(funcs map[string]function.Function) cty.Value {
	vals := make(map[string]cty.Value, len(s.vars))
	for _, v := range s.vars {
		if !v.set || v.broken || v.failed {
			vals[v.name] = cty.DynamicVal
			continue
		}
		val := v.value
		if v.sensitive {
			val = val.Mark(sensitiveMark)
		}
		vals[v.name] = val
		for _, vd := range v.validations {
			s.checkValidation(v, val, vd, funcs)
		}
	}
	return cty.ObjectVal(vals)
}

func (s *state) checkValidation(v *variable, val cty.Value, vd *validation, funcs map[string]function.Function) {
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.name: val})},
		Functions: funcs,
	}
	cond, diags := vd.condition.Value(ctx)
	s.addAll(diags)
	if diags.HasErrors() {
		return
	}
	cond, _ = cond.UnmarkDeep()
	if !cond.IsKnown() {
		return
	}
	cond, err := convert.Convert(cond, cty.Bool)
	if err != nil || cond.IsNull() {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "invalid validation condition",
			Detail:   fmt.Sprintf("A condition must be true or false and may refer only to var.%s.", v.name),
			Subject:  vd.condition.Range().Ptr(),
		})
		return
	}
	if cond.True() {
		return
	}
	msg := "The value is not valid."
	mval, diags := vd.errorMessage.Value(ctx)
	s.addAll(diags)
	if !diags.HasErrors() && mval.ContainsMarked() {
		// Derived from the sensitive value (upper(var.token)), it would
		// show it: masking finds only the value as it was given.
		msg = "The value is not valid. (The error message is derived from a sensitive value, so it is not shown.)"
	} else if !diags.HasErrors() {
		mval, _ = mval.UnmarkDeep()
		if m, err := convert.Convert(mval, cty.String); err == nil && m.IsKnown() && !m.IsNull() {
			msg = strings.TrimSpace(m.AsString())
		} else {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "invalid type for \"error_message\"",
				Detail:   "Expected a string.",
				Subject:  vd.errorMessage.Range().Ptr(),
			})
		}
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("invalid value for variable %q", v.name),
		Detail: fmt.Sprintf("%s\n\nThe value comes from %s and was rejected by the validation rule at %s.",
			msg, v.source, posString(vd.condition.Range())),
		Subject: v.srcRange.Ptr(),
	})
}

// textRange is the range covering all of text in the pseudo-file fname.
func textRange(fname, text string) hcl.Range {
	end := hcl.Pos{Line: 1, Column: 1, Byte: len(text)}
	for _, r := range text {
		if r == '\n' {
			end.Line++
			end.Column = 1
		} else {
			end.Column++
		}
	}
	return hcl.Range{Filename: fname, Start: hcl.InitialPos, End: end}
}

// convertErrorString renders a cty conversion error, with the path to
// the offending element when there is one.
func convertErrorString(err error) string {
	pe, ok := err.(cty.PathError)
	if !ok || len(pe.Path) == 0 {
		return err.Error()
	}
	var b strings.Builder
	for _, step := range pe.Path {
		switch st := step.(type) {
		case cty.GetAttrStep:
			fmt.Fprintf(&b, ".%s", st.Name)
		case cty.IndexStep:
			switch st.Key.Type() {
			case cty.String:
				fmt.Fprintf(&b, "[%q]", st.Key.AsString())
			case cty.Number:
				fmt.Fprintf(&b, "[%s]", st.Key.AsBigFloat().Text('f', -1))
			}
		}
	}
	return fmt.Sprintf("%s (at %s)", pe.Error(), strings.TrimPrefix(b.String(), "."))
}

// typeName is a human name for val's type.
func typeName(val cty.Value) string {
	if val.IsNull() {
		return "null"
	}
	ty := val.Type()
	switch {
	case ty == cty.String:
		return "a string"
	case ty == cty.Number:
		return "a number"
	case ty == cty.Bool:
		return "a bool"
	case ty.IsTupleType() || ty.IsListType():
		return "a list"
	case ty.IsSetType():
		return "a set"
	case ty.IsObjectType() || ty.IsMapType():
		return "an object"
	}
	return ty.FriendlyName()
}

// sensitiveValues returns the text of every string and number in the
// values of the variables declared sensitive, without repeats, in
// declaration order.
func (s *state) sensitiveValues() []string {
	return s.sensitive(func(v *variable) []string {
		if !v.set || v.broken || v.failed {
			return nil
		}
		return valueTexts(v.value)
	})
}

// sensitiveTexts returns, as sensitiveValues, what must not be printed:
// also the values given but rejected, and the raw text of -var and
// environment values.
func (s *state) sensitiveTexts() []string {
	return s.sensitive(func(v *variable) []string { return v.texts })
}

func (s *state) sensitive(texts func(*variable) []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s.vars {
		if !v.sensitive {
			continue
		}
		for _, text := range texts(v) {
			if text != "" && !seen[text] {
				seen[text] = true
				out = append(out, text)
			}
		}
	}
	return out
}

// CheckVars reports the -var names and the var file entries of opts that
// no recipe loaded by l declares. With Options.SharedVars, Load ignores a
// name its recipe does not declare: a folder's recipes declare different
// variables, and one -var serves those that declare it. The caller calls
// CheckVars once every recipe is loaded, so that a typo is still caught.
func (l *Loader) CheckVars(opts Options) hcl.Diagnostics {
	declared := l.declaredNames()
	l.mu.Lock()
	recipesLoaded := make([]string, 0, len(l.names))
	for _, n := range l.names {
		recipesLoaded = append(recipesLoaded, n)
	}
	l.mu.Unlock()
	if len(recipesLoaded) == 0 {
		return nil // no recipe could be read: their errors say why
	}
	sort.Strings(recipesLoaded)
	recipesLoaded = slices.Compact(recipesLoaded)
	isDeclared := func(n string) bool { _, ok := slices.BinarySearch(declared, n); return ok }
	which := "recipe " + recipesLoaded[0] + " does not declare"
	if len(recipesLoaded) > 1 {
		which = "none of the recipes (" + strings.Join(recipesLoaded, ", ") + ") declares"
	}
	didYouMean := func(n string) string {
		if sug := suggest(n, declared); sug != "" {
			return fmt.Sprintf(" (did you mean %q?)", sug)
		}
		return ""
	}
	var diags hcl.Diagnostics
	for _, path := range opts.VarFiles {
		f := l.Files()[path]
		if f == nil {
			continue // it could not be read: Load reported it
		}
		attrMap, _ := f.Body.JustAttributes()
		attrs := make([]*hcl.Attribute, 0, len(attrMap))
		for _, a := range attrMap {
			attrs = append(attrs, a)
		}
		sort.Slice(attrs, func(i, j int) bool { return attrs[i].NameRange.Start.Byte < attrs[j].NameRange.Start.Byte })
		for _, a := range attrs {
			if isDeclared(a.Name) {
				continue
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("undeclared variable %q", a.Name),
				Detail: fmt.Sprintf("This var file sets a variable that %s%s. Declare it with a variable block, or remove it from %s.",
					which, didYouMean(a.Name), path),
				Subject: a.NameRange.Ptr(),
			})
		}
	}
	names := make([]string, 0, len(opts.Vars))
	for k := range opts.Vars {
		names = append(names, k)
	}
	sort.Strings(names)
	l.mu.Lock()
	autoVersions := slices.Clone(l.autoVersions)
	l.mu.Unlock()
	for _, k := range names {
		if isDeclared(k) {
			continue
		}
		raw := opts.Vars[k]
		if k == "version" && len(autoVersions) > 0 {
			for _, rng := range autoVersions {
				diags = append(diags, autoVersionVarDiag(rng, raw))
			}
			continue
		}
		fname := "<-var " + k + ">"
		l.addFile(fname, &hcl.File{Bytes: []byte(raw)})
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("undeclared variable %q", k),
			Detail:   fmt.Sprintf("-var %s=... sets a variable that %s%s. Declare it with a variable block, or drop the -var.", k, which, didYouMean(k)),
			Subject:  textRange(fname, raw).Ptr(),
		})
	}
	return diags
}
