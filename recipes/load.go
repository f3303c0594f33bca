package recipes

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/bakery-sh/bakery/internal/redact"
)

// EnvVarPrefix is the prefix of environment variables that set recipe
// variables: BAKERY_VAR_version=1.2.0 sets var.version.
const EnvVarPrefix = "BAKERY_VAR_"

// Options for Load.
type Options struct {
	// Vars are -var name=value assignments. A raw value is converted to
	// the variable's declared type the way Packer does it: for a string,
	// number, bool or untyped (any) variable the raw text is the value
	// (then converted, so "3" becomes the number 3); for a list, map or
	// object variable it is parsed as an HCL expression ('["a","b"]').
	Vars map[string]string
	// VarFiles are -var-file paths, applied in order: HCL files of
	// "name = value" lines, or JSON objects when the name ends in ".json".
	VarFiles []string
	// Env is the environment in os.Environ() form. BAKERY_VAR_<name>=value
	// entries set variables, and the env() function reads from it. Nil
	// means an empty environment: pass os.Environ() to use the process's.
	Env []string
	// Now is the clock for timestamp(). Nil means time.Now.
	Now func() time.Time
	// Scope is how much of the recipe the caller needs. The default,
	// ScopeAll, evaluates and checks everything (bake, validate, launch).
	Scope Scope
	// SharedVars says that Vars and VarFiles are shared by several
	// recipes: a name this recipe does not declare is ignored here, and
	// the caller reports, with Loader.CheckVars after loading them all,
	// the names that no recipe declares. The default reports them here.
	SharedVars bool
}

// Scope is how much of a recipe a caller needs.
type Scope int

const (
	// ScopeAll evaluates and checks the whole recipe: every required
	// variable has a value and every file it names exists.
	ScopeAll Scope = iota
	// ScopeCatalog is for the verbs that read and change the catalog
	// (promote, status, history, revoke, unrevoke): only what decides
	// where the artifacts live, their stages and ledger must be known.
	// A required variable without a value is unknown rather than an
	// error, and files the recipe names (layer sources, scripts) are not
	// read or checked, so that a fresh checkout without them works. A
	// variable that such an attribute needs is reported as an error that
	// names the attribute. Fields left unknown are empty in the Recipe.
	ScopeCatalog
	// ScopeBases is ScopeCatalog plus what outdated reads: the bases of
	// containers and the source AMIs of machine images.
	ScopeBases
)

// Loader parses recipe files and keeps their sources (and those of any
// var files) so that diagnostics can be printed with source snippets by
// WriteDiagnostics. A Loader is safe for concurrent use.
type Loader struct {
	mu    sync.Mutex
	files map[string]*hcl.File
	// declared are the variable names declared by the recipes loaded.
	declared map[string]bool
	// names maps a recipe file, as given to Load, to its recipe name.
	names map[string]string
	// secrets are the texts of the sensitive variables' values (valid
	// or not) of the recipes loaded: never printed.
	secrets []string
	// autoVersions are where the recipes loaded with SharedVars that
	// say version = "auto" write it, when -var version is given and they
	// do not declare it: should no recipe declare it, CheckVars reports
	// the -var there.
	autoVersions []hcl.Range
}

// SensitivePlaceholder is what diagnostics show instead of the value of
// a variable declared sensitive.
const SensitivePlaceholder = redact.Placeholder

// SensitiveValues returns the texts of every value given to a variable
// declared sensitive in the recipes loaded so far, including values that
// were rejected and the recipes that have errors: what no output may
// show. Values shorter than redact.MinLen bytes are left out.
func (l *Loader) SensitiveValues() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.secrets)
}

func (l *Loader) addSecrets(texts []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range texts {
		if len(t) >= redact.MinLen && !slices.Contains(l.secrets, t) {
			l.secrets = append(l.secrets, t)
		}
	}
}

// mask replaces, in the summary and detail of diags, every sensitive
// value of the recipes loaded by SensitivePlaceholder (an error of a
// function, such as parseint, may quote its argument).
func (l *Loader) mask(diags hcl.Diagnostics) {
	secrets := l.SensitiveValues()
	if len(secrets) == 0 {
		return
	}
	for _, d := range diags {
		d.Summary = redact.MaskAs(d.Summary, secrets, SensitivePlaceholder)
		d.Detail = redact.MaskAs(d.Detail, secrets, SensitivePlaceholder)
	}
}

// NewLoader returns an empty Loader.
func NewLoader() *Loader {
	return &Loader{files: make(map[string]*hcl.File), declared: make(map[string]bool), names: make(map[string]string)}
}

// RecipeName returns the name of the recipe in the file at path, as given
// to Load, even when the recipe had errors; "" when Load could not read
// a recipe block label from it.
func (l *Loader) RecipeName(path string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.names[path]
}

func (l *Loader) declare(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.declared[name] = true
}

// declaredNames returns the variable names declared by the recipes loaded.
func (l *Loader) declaredNames() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.declared))
	for n := range l.declared {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Files returns the sources read so far, keyed by the file name used in
// diagnostics (the path as it was given to Load or in Options.VarFiles).
// The map is a copy; the files are shared and must not be modified.
func (l *Loader) Files() map[string]*hcl.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]*hcl.File, len(l.files))
	for k, v := range l.files {
		out[k] = v
	}
	return out
}

func (l *Loader) addFile(name string, f *hcl.File) {
	if f == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.files[name] = f
}

// Load reads, evaluates and validates the recipe file at path.
//
// Every problem found is reported as an error diagnostic whose Subject
// points at the offending expression or block; independent problems are
// all reported in one pass. The recipe is nil when diags has errors.
// Diagnostics name files by the path as given; the returned Recipe
// records absolute paths, and nothing in it that goes into Canonical
// depends on the working directory.
func (l *Loader) Load(path string, opts Options) (*Recipe, hcl.Diagnostics) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("resolving recipe path %q: %v", path, err),
			Detail:   "Check that the current directory still exists.",
		}}
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("reading recipe file: %v", err),
			Detail:   "Check the path; recipe files are named *.bake.hcl.",
		}}
	}
	file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if file != nil && file.Bytes == nil {
		file.Bytes = src
	}
	l.addFile(path, file)
	if name := recipeLabel(file); name != "" {
		l.mu.Lock()
		l.names[path] = name
		l.mu.Unlock()
	}
	if diags.HasErrors() {
		// What it declares still counts for CheckVars: the syntax error
		// is the problem to report, not an "undeclared" -var.
		for _, v := range blockLabels(file, "variable") {
			l.declare(v)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}

	s := newState(l, path, abs, opts)
	r, more := s.load(file)
	diags = append(diags, more...)
	l.addSecrets(s.sensitiveTexts())
	l.mask(diags)
	sortInFile(diags, path)
	if diags.HasErrors() {
		return nil, diags
	}
	return r, diags
}

// WriteDiagnostics prints diags for a human: each one starts with its
// position as FILE:LINE:COL (as compilers print it, so editors jump to it), then the severity and summary, the source
// snippet with the offending range highlighted (in bold and underlined
// when color is true) and the detail. The values of variables declared
// sensitive show as SensitivePlaceholder, in snippets too (a -var value,
// a var file line or a default holds one).
func (l *Loader) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, color bool) error {
	var buf strings.Builder
	tw := hcl.NewDiagnosticTextWriter(&buf, l.Files(), 0, color)
	for _, d := range diags {
		if d.Subject != nil {
			fmt.Fprintf(&buf, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		if err := tw.WriteDiagnostic(d); err != nil {
			return fmt.Errorf("writing diagnostics: %w", err)
		}
	}
	if _, err := io.WriteString(w, redact.MaskAs(buf.String(), l.SensitiveValues(), SensitivePlaceholder)); err != nil {
		return fmt.Errorf("writing diagnostics: %w", err)
	}
	return nil
}

// state is the working state of one Load call.
type state struct {
	loader *Loader
	name   string // recipe file name as used in diagnostics
	file   string // absolute recipe file
	dir    string // absolute recipe folder
	opts   Options
	env    map[string]string

	vars    []*variable
	varByID map[string]*variable
	ctx     *hcl.EvalContext

	// stagesRange is where the recipe's stages list is written, once it
	// has been read.
	stagesRange hcl.Range

	// missing are the variables left without a value (only outside
	// ScopeAll, where that is an error), and missingFiles the files that
	// file() could not read there; both make values unknown.
	missing      map[string]bool
	missingFiles []string

	diags hcl.Diagnostics
}

func newState(l *Loader, name, abs string, opts Options) *state {
	s := &state{
		loader:  l,
		name:    name,
		file:    abs,
		dir:     filepath.Dir(abs),
		opts:    opts,
		env:     make(map[string]string),
		varByID: make(map[string]*variable),
		missing: make(map[string]bool),
	}
	for _, kv := range opts.Env {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			s.env[k] = v
		}
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	return s
}

func (s *state) add(d ...*hcl.Diagnostic) { s.diags = append(s.diags, d...) }

func (s *state) addAll(d hcl.Diagnostics) { s.diags = append(s.diags, d...) }

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "recipe", LabelNames: []string{"name"}},
		{Type: "container", LabelNames: []string{"name"}},
		{Type: "machine_image", LabelNames: []string{"name"}},
		{Type: "stage", LabelNames: []string{"name"}},
		{Type: "catalog"},
		{Type: "fleet", LabelNames: []string{"stage"}},
		{Type: "retain"},
	},
}

func (s *state) load(file *hcl.File) (*Recipe, hcl.Diagnostics) {
	content, diags := file.Body.Content(fileSchema)
	s.addAll(diags)

	var varBlocks, localBlocks, recipeBlocks, containerBlocks, imageBlocks, stageBlocks, catalogBlocks, fleetBlocks, retainBlocks []*hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			varBlocks = append(varBlocks, b)
		case "locals":
			localBlocks = append(localBlocks, b)
		case "recipe":
			recipeBlocks = append(recipeBlocks, b)
		case "container":
			containerBlocks = append(containerBlocks, b)
		case "machine_image":
			imageBlocks = append(imageBlocks, b)
		case "stage":
			stageBlocks = append(stageBlocks, b)
		case "catalog":
			catalogBlocks = append(catalogBlocks, b)
		case "fleet":
			fleetBlocks = append(fleetBlocks, b)
		case "retain":
			retainBlocks = append(retainBlocks, b)
		}
	}

	funcs := s.functions()
	s.declareVariables(varBlocks, funcs)
	s.assignVariables()
	varObj := s.variableObject(funcs)

	s.ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": varObj},
		Functions: funcs,
	}
	s.ctx.Variables["local"] = s.evalLocals(localBlocks)

	r := &Recipe{File: s.file, Dir: s.dir, sensitive: s.sensitiveValues()}
	switch len(recipeBlocks) {
	case 0:
		if hasBlock(file.Body, "recipe") {
			break // it has the wrong labels, which Content reported
		}
		start := hcl.Pos{Line: 1, Column: 1, Byte: 0}
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "missing recipe block",
			Detail:   "Every recipe file needs exactly one recipe \"NAME\" { version = \"...\" stages = [...] } block.",
			Subject:  &hcl.Range{Filename: s.name, Start: start, End: start},
		})
	default:
		for _, dup := range recipeBlocks[1:] {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "duplicate recipe block",
				Detail: fmt.Sprintf("A recipe file holds exactly one recipe block and the first is at %s; put each recipe in its own *.bake.hcl file.",
					posString(recipeBlocks[0].DefRange)),
				Subject: dup.DefRange.Ptr(),
			})
		}
		s.decodeRecipe(recipeBlocks[0], r)
	}

	seen := make(map[string]*hcl.Block)
	for _, b := range containerBlocks {
		c := s.decodeContainer(b)
		name := b.Labels[0]
		if s.duplicate(seen, b, "container", fmt.Sprintf("Container names are unique within a recipe and %q is first declared at %%s; rename or remove one of them.", name)) {
			continue
		}
		if c != nil {
			r.Containers = append(r.Containers, c)
		}
	}

	seen = make(map[string]*hcl.Block)
	for _, b := range imageBlocks {
		m := s.decodeMachineImage(b)
		name := b.Labels[0]
		if s.duplicate(seen, b, "machine_image", fmt.Sprintf("machine_image names are unique within a recipe and %q is first declared at %%s; rename or remove one of them.", name)) {
			continue
		}
		r.MachineImages = append(r.MachineImages, m)
	}

	// Stage blocks may be written before the recipe block; they are read
	// after it and the artifacts, which they are checked against.
	s.decodeStages(stageBlocks, r)
	for _, m := range r.MachineImages {
		s.checkCopyKeys(r, m)
	}
	for _, m := range r.MachineImages {
		s.warnSelfSource(r, m)
		s.checkTagBudget(r, m)
	}
	s.decodeCatalogs(catalogBlocks, r)
	s.decodeFleets(fleetBlocks, r)
	s.decodeRetains(retainBlocks, r)
	if s.opts.Scope != ScopeAll {
		s.checkNeeded(file, localBlocks, r.Name)
	}

	// A recipe bakes something. Blocks that Content skipped for a label
	// error count: they were reported already.
	if len(recipeBlocks) > 0 && !hasBlock(file.Body, "container") && !hasBlock(file.Body, "machine_image") {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "a recipe needs at least one container or machine_image block",
			Detail:   `Add what the recipe bakes: a container "NAME" { base = "..." layer { ... } } block for an OCI image, or a machine_image "NAME" { source_ami_filter { ... } provision "shell" { ... } } block for an AMI.`,
			Subject:  recipeBlocks[0].DefRange.Ptr(),
		})
	}
	return r, s.diags
}

// duplicate reports whether block b's label was seen before in seen (and
// reports it, detail's %s naming where the first is); otherwise it
// records b.
func (s *state) duplicate(seen map[string]*hcl.Block, b *hcl.Block, typ, detail string) bool {
	name := b.Labels[0]
	first, dup := seen[name]
	if !dup {
		seen[name] = b
		return false
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("duplicate %s block %q", typ, name),
		Detail:   fmt.Sprintf(detail, posString(first.DefRange)),
		Subject:  b.DefRange.Ptr(),
	})
	return true
}

// recipeLabel returns the label of the first recipe block of file, or "".
func recipeLabel(file *hcl.File) string {
	if labels := blockLabels(file, "recipe"); len(labels) > 0 {
		return labels[0]
	}
	return ""
}

// blockLabels returns the labels of the blocks of type typ with one label
// in file, as far as it could be parsed.
func blockLabels(file *hcl.File, typ string) []string {
	if file == nil {
		return nil
	}
	sb, ok := file.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var out []string
	for _, b := range sb.Blocks {
		if b.Type == typ && len(b.Labels) == 1 {
			out = append(out, b.Labels[0])
		}
	}
	return out
}

// hasBlock reports whether body has a block of type typ, even one that
// Content skipped because of a label error.
func hasBlock(body hcl.Body, typ string) bool {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return false
	}
	for _, b := range sb.Blocks {
		if b.Type == typ {
			return true
		}
	}
	return false
}

// sortInFile puts the diagnostics about file name in source order, in
// the slots they already occupy: the recipe is decoded attribute by
// attribute, not line by line, but a reader goes down the file. The others
// (about var files and -var values) keep their places.
func sortInFile(diags hcl.Diagnostics, name string) {
	var slots []int
	var inFile hcl.Diagnostics
	for i, d := range diags {
		if d.Subject != nil && d.Subject.Filename == name {
			slots = append(slots, i)
			inFile = append(inFile, d)
		}
	}
	sort.SliceStable(inFile, func(i, j int) bool { return inFile[i].Subject.Start.Byte < inFile[j].Subject.Start.Byte })
	for k, i := range slots {
		diags[i] = inFile[k]
	}
}

// posString renders the start of r as FILE:LINE,COL.
func posString(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// suggest returns the candidate closest to s when it is close enough to
// be a likely typo, or "".
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
