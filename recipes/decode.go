package recipes

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

var (
	// recipeNameRE: recipe names appear in RECIPE@VERSION references.
	recipeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	// versionRE: a version is used as an image tag.
	versionRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
	stageRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	// componentRE is a repository path component as the OCI
	// distribution spec defines it.
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	portRE      = regexp.MustCompile(`^([0-9]+)(?:/([a-z]+))?$`)
	// platformRE: os/arch[/variant][:osversion], as v1.ParsePlatform reads it.
	platformRE = regexp.MustCompile(`^[a-z0-9_]+/[a-z0-9_]+(?:/[a-z0-9_.]+)?(?::[A-Za-z0-9_.-]+)?$`)
)

var recipeSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "version"},
		{Name: "version_format"},
		{Name: "stages"},
		{Name: "description"},
	},
}

var containerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "base"},
		{Name: "repository"},
		{Name: "env"},
		{Name: "entrypoint"},
		{Name: "cmd"},
		{Name: "workdir"},
		{Name: "user"},
		{Name: "labels"},
		{Name: "exposed_ports"},
		{Name: "platforms"},
		{Name: "compression"},
		{Name: "sbom"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "layer"}},
}

var layerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "source"},
		{Name: "destination"},
		{Name: "mode"},
		{Name: "uid"},
		{Name: "gid"},
	},
}

func (s *state) decodeRecipe(b *hcl.Block, r *Recipe) {
	r.Name, r.DeclRange = b.Labels[0], b.DefRange
	if !recipeNameRE.MatchString(r.Name) {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("invalid recipe name %q", r.Name),
			Detail:   "A recipe name holds lowercase letters, digits, '.', '_' and '-', and starts with a letter or digit, such as \"web\" or \"hello-api\".",
			Subject:  b.LabelRanges[0].Ptr(),
		})
	}
	content, diags := b.Body.Content(recipeSchema)
	s.addAll(diags)

	if attr := s.required(b, content, "version", `version = "1.0.0"`); attr != nil {
		r.VersionRange, r.VersionVars = attr.Expr.Range(), versionVars(attr.Expr)
		if v, ok := s.stringValue(attr, true, `quote it, as in version = "1.0.0"`); ok {
			switch {
			case v == "":
				s.attrError(attr, "empty version", `Set version to a non-empty string such as "1.0.0".`)
			case !versionRE.MatchString(v):
				s.attrError(attr, fmt.Sprintf("invalid version %q", v),
					"A version is used as an image tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-', such as \"1.4.2\" or \"2024-06-01_1\".")
			default:
				r.Version = v
				r.VersionAuto = v == AutoVersion
			}
		}
		if raw, given := s.opts.Vars["version"]; given && r.VersionAuto && len(r.VersionVars) == 0 {
			if s.opts.SharedVars && s.varByID["version"] == nil {
				// The -var may serve other recipes of the folder;
				// CheckVars reports it here if none declares it.
				s.loader.mu.Lock()
				s.loader.autoVersions = append(s.loader.autoVersions, attr.Expr.Range())
				s.loader.mu.Unlock()
			} else {
				// One message, at the version: it replaces the
				// "undeclared variable" one about the -var.
				s.diags = slices.DeleteFunc(s.diags, func(d *hcl.Diagnostic) bool {
					return d.Summary == `undeclared variable "version"`
				})
				s.add(autoVersionVarDiag(attr.Expr.Range(), raw))
			}
		}
	}
	if attr := content.Attributes["version_format"]; attr != nil {
		if v, ok := s.stringValue(attr, true, `quote it, as in version_format = "{date}.{n}"`); ok {
			switch why := checkVersionFormat(v); {
			case why != "":
				s.attrError(attr, fmt.Sprintf("invalid version_format %q: %s", v, why),
					`A version_format is the version an auto-versioned recipe gets, with placeholders: {date} (2026.11.26, UTC), {year}, {month}, {day} and {n}, the counter (1 + the highest of the same date), once; such as "{date}.{n}" (the default) or "{year}{month}{day}-{n}".`)
			case r.Version != "" && !r.VersionAuto:
				s.attrError(attr, "version_format without version = \"auto\"",
					fmt.Sprintf(`version_format says how bakery assigns versions, and the version of %s is %q: set version = "auto", or drop version_format.`, r.Name, r.Version))
			default:
				r.VersionFormat = v
			}
		}
	}
	if attr := s.required(b, content, "stages", `stages = ["dev", "staging", "prod"]`); attr != nil {
		if stages, ranges, ok := s.stringList(attr); ok {
			if len(stages) == 0 {
				s.attrError(attr, "empty stages", `List at least one stage, in promotion order, such as stages = ["dev", "staging", "prod"].`)
			}
			seen := make(map[string]hcl.Range)
			for i, st := range stages {
				switch first, dup := seen[st]; {
				case !stageRE.MatchString(st):
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("invalid stage name %q", st),
						Detail:   "A stage name holds lowercase letters, digits and '-', and starts with a letter or digit, such as \"staging\".",
						Subject:  ranges[i].Ptr(),
					})
				case dup:
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("duplicate stage %q", st),
						Detail:   fmt.Sprintf("Each stage is listed once; %q is first listed at %s.", st, posString(first)),
						Subject:  ranges[i].Ptr(),
					})
				default:
					seen[st] = ranges[i]
				}
			}
			r.Stages, r.stageRanges, s.stagesRange = stages, seen, attr.Expr.Range()
		}
	}
	s.checkVersionNotStage(r)
	if attr := content.Attributes["description"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok {
			r.Description = v
		}
	}
}

func (s *state) decodeContainer(b *hcl.Block) *Container {
	c := &Container{Name: b.Labels[0], DeclRange: b.DefRange}
	if !componentRE.MatchString(c.Name) {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("invalid container name %q", c.Name),
			Detail:   "A container name is used as a repository name: lowercase letters and digits, optionally separated by '.', '_', '__' or dashes, such as \"hello\" or \"web-api\".",
			Subject:  b.LabelRanges[0].Ptr(),
		})
	}
	content, diags := b.Body.Content(containerSchema)
	s.addAll(diags)
	attrs := content.Attributes

	if attr := s.required(b, content, "base", `base = "scratch", a registry reference such as base = "alpine:3.20", or an OCI layout such as base = "oci:./layout"`); attr != nil {
		s.decodeBase(c, attr)
	}
	if attr := attrs["repository"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" {
			if _, err := name.NewRepository(v); err != nil {
				s.attrError(attr, fmt.Sprintf("invalid repository %q", v),
					fmt.Sprintf("Write a repository such as \"127.0.0.1:5000/team/hello\" or \"ghcr.io/org/hello\" (no tag), or leave it out to bake into the local OCI layout (%v).", err))
			} else {
				c.Repository = v
			}
		}
	}
	if attr := attrs["env"]; attr != nil {
		if m, ok := s.stringMap(attr); ok {
			for _, k := range sortedKeys(m) {
				if k == "" || strings.Contains(k, "=") {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("invalid environment variable name %q", k),
						Detail:   "An environment variable name is non-empty and has no '='.",
						Subject:  s.keyRange(attr, k).Ptr(),
					})
				}
			}
			c.Env = m
		}
	}
	if attr := attrs["entrypoint"]; attr != nil {
		if l, _, ok := s.stringList(attr); ok {
			c.Entrypoint = l
		}
	}
	if attr := attrs["cmd"]; attr != nil {
		if l, _, ok := s.stringList(attr); ok {
			c.Cmd = l
		}
	}
	if attr := attrs["workdir"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok {
			if v != "" && !path.IsAbs(v) {
				s.attrError(attr, "workdir must be an absolute path", fmt.Sprintf("Write the directory inside the image from its root, such as %q.", "/"+v))
			} else {
				c.Workdir = v
			}
		}
	}
	if attr := attrs["user"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok {
			c.User = v
		}
	}
	if attr := attrs["labels"]; attr != nil {
		if m, ok := s.stringMap(attr); ok {
			if _, empty := m[""]; empty {
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "empty label key",
					Detail:   "Label keys are non-empty, such as \"org.opencontainers.image.source\".",
					Subject:  s.keyRange(attr, "").Ptr(),
				})
			}
			c.Labels = m
		}
	}
	if attr := attrs["exposed_ports"]; attr != nil {
		if ports, ranges, ok := s.stringList(attr); ok {
			for i, p := range ports {
				if norm, ok := normalizePort(p); ok {
					c.ExposedPorts = append(c.ExposedPorts, norm)
					continue
				}
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("invalid exposed port %q", p),
					Detail:   "Write PORT or PORT/PROTOCOL, with PORT from 1 to 65535 and PROTOCOL tcp (the default), udp or sctp, such as \"8080\" or \"53/udp\".",
					Subject:  ranges[i].Ptr(),
				})
			}
		}
	}
	if attr := attrs["platforms"]; attr != nil {
		if platforms, ranges, ok := s.stringList(attr); ok {
			seen := make(map[string]bool)
			for i, p := range platforms {
				switch {
				case !platformRE.MatchString(p):
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("invalid platform %q", p),
						Detail:   "Write OS/ARCH or OS/ARCH/VARIANT in lowercase, such as \"linux/amd64\" or \"linux/arm/v7\".",
						Subject:  ranges[i].Ptr(),
					})
				case seen[p]:
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("duplicate platform %q", p),
						Detail:   "List each platform once.",
						Subject:  ranges[i].Ptr(),
					})
				default:
					seen[p] = true
					c.Platforms = append(c.Platforms, p)
				}
			}
		}
	}
	c.Compression = CompressionGzip
	if attr := attrs["compression"]; attr != nil {
		if v, ok := s.stringValue(attr, true, `write compression = "gzip" or compression = "zstd"`); ok {
			switch Compression(v) {
			case CompressionGzip, CompressionZstd:
				c.Compression = Compression(v)
			default:
				s.attrError(attr, fmt.Sprintf("invalid compression %q", v),
					`Write compression = "gzip" (the default, read everywhere) or compression = "zstd" (faster; read by containerd 1.5+, Docker 23+, podman, skopeo and umoci).`)
			}
		}
	}

	if attr := attrs["sbom"]; attr != nil {
		if v, ok := s.boolValue(attr); ok {
			c.NoSBOM = !v
		}
	}

	if len(content.Blocks) == 0 {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "missing layer block",
			Detail:   "A container needs at least one layer block, such as layer { source = \"app/\"  destination = \"/app/\" }.",
			Subject:  b.DefRange.Ptr(),
		})
	}
	for _, lb := range content.Blocks {
		c.Layers = append(c.Layers, s.decodeLayer(lb))
	}
	return c
}

func (s *state) decodeBase(c *Container, attr *hcl.Attribute) {
	base, ok := s.stringValue(attr, false, "")
	if !ok {
		return
	}
	c.Base, c.BaseRange = base, attr.Expr.Range()
	switch {
	case base == "scratch":
		c.BaseKind = BaseScratch
	case strings.HasPrefix(base, LinkPrefix):
		if l := s.parseLink(attr, base, "base"); l != nil {
			c.BaseKind, c.BaseLink = BaseRecipe, l
		}
	case strings.HasPrefix(base, "oci:"):
		p, ref := splitLayoutRef(strings.TrimPrefix(base, "oci:"))
		if p == "" || strings.HasSuffix(base, ":") {
			s.attrError(attr, fmt.Sprintf("invalid OCI layout base %q", base),
				`Write oci:PATH or oci:PATH:REF, such as "oci:./layout" or "oci:./layout:v1"; relative paths are resolved against the recipe's folder.`)
			return
		}
		s.checkLayout(c, attr, p, ref)
	case strings.HasPrefix(base, "/"), strings.HasPrefix(base, "./"), strings.HasPrefix(base, "../"):
		p, ref := splitLayoutRef(base)
		if ref == "" && strings.HasSuffix(base, ":") {
			s.attrError(attr, fmt.Sprintf("invalid OCI layout base %q", base),
				`Write PATH or PATH:REF, such as "./layout" or "./layout:v1"; relative paths are resolved against the recipe's folder.`)
			return
		}
		s.checkLayout(c, attr, p, ref)
	default:
		if _, err := name.ParseReference(base); err != nil {
			s.attrError(attr, "invalid base image reference",
				fmt.Sprintf("Use \"scratch\", a registry reference such as \"alpine:3.20\" or \"ghcr.io/org/img@sha256:…\", or an OCI layout such as \"oci:./layout\" or \"./layout\" (%v).", err))
			return
		}
		c.BaseKind = BaseRegistry
	}
}

// splitLayoutRef splits "PATH[:REF]": REF follows the first ':' after the
// last '/', so that a digest REF ("sha256:…") stays whole and a folder
// path may contain ':' in its parent folders.
func splitLayoutRef(s string) (p, ref string) {
	slash := strings.LastIndex(s, "/")
	if i := strings.Index(s[slash+1:], ":"); i >= 0 {
		cut := slash + 1 + i
		return s[:cut], s[cut+1:]
	}
	return s, ""
}

func (s *state) checkLayout(c *Container, attr *hcl.Attribute, p, ref string) {
	abs := s.resolve(p)
	if s.opts.Scope != ScopeAll { // no file checks for the catalog verbs
		c.BaseKind, c.BaseLayoutPath, c.BaseLayoutRef = BaseLayout, abs, ref
		return
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.attrError(attr, fmt.Sprintf("no such OCI layout %q", p),
			fmt.Sprintf("Paths are relative to %s (the recipe's folder). Check the path, or write a registry reference without a leading \"/\", \"./\" or \"../\".", s.dir))
		return
	case err != nil:
		s.attrError(attr, fmt.Sprintf("reading OCI layout %q: %v", p, err), "Check the path and its permissions.")
		return
	case !fi.IsDir():
		s.attrError(attr, fmt.Sprintf("OCI layout %q is not a directory", p), "An OCI image layout is a directory holding an oci-layout file, index.json and blobs/.")
		return
	}
	if _, err := os.Stat(filepath.Join(abs, "oci-layout")); err != nil {
		s.attrError(attr, fmt.Sprintf("%q is not an OCI image layout", p),
			fmt.Sprintf("The directory %s has no oci-layout file. Point base at an OCI image layout (for example one written by `bakery bake` or `crane pull --format=oci`).", abs))
		return
	}
	c.BaseKind, c.BaseLayoutPath, c.BaseLayoutRef = BaseLayout, abs, ref
}

func (s *state) decodeLayer(b *hcl.Block) *Layer {
	l := &Layer{DeclRange: b.DefRange}
	content, diags := b.Body.Content(layerSchema)
	s.addAll(diags)
	attrs := content.Attributes

	if attr := s.required(b, content, "source", `source = "app/" (a directory), "app/hello" (a file) or "rootfs.tar.gz" (a tarball)`); attr != nil {
		l.SourceRange = attr.Expr.Range()
		if src, ok := s.stringValue(attr, false, ""); ok {
			l.Source = src
			s.checkSource(l, attr)
		}
	}
	if attr := s.required(b, content, "destination", `destination = "/app/"`); attr != nil {
		if dst, ok := s.stringValue(attr, false, ""); ok {
			if !path.IsAbs(dst) {
				s.attrError(attr, "destination must be an absolute path",
					fmt.Sprintf("Write the path inside the image from its root, such as %q.", "/"+strings.TrimPrefix(dst, "./")))
			} else {
				l.Destination = dst
			}
		}
	}
	if attr := attrs["mode"]; attr != nil {
		if m, ok := s.mode(attr); ok {
			l.Mode = &m
		}
	}
	if attr := attrs["uid"]; attr != nil {
		if id, ok := s.id(attr); ok {
			l.UID = &id
		}
	}
	if attr := attrs["gid"]; attr != nil {
		if id, ok := s.id(attr); ok {
			l.GID = &id
		}
	}
	return l
}

func (s *state) checkSource(l *Layer, attr *hcl.Attribute) {
	src := l.Source
	if src == "" {
		s.attrError(attr, "empty layer source", `Name a file, a directory ending in "/" or a tarball, relative to the recipe's folder.`)
		return
	}
	p, isDir, ok := s.localPath(attr, src, "layer source", true)
	if !ok {
		return
	}
	l.Path = p
	lower := strings.ToLower(src)
	switch {
	case isDir:
		l.Kind = SourceDir
	case strings.HasSuffix(lower, ".tar"), strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		l.Kind = SourceTarball
	default:
		l.Kind = SourceFile
	}
}

// localPath checks that src, the non-empty value of attr, names a regular
// file on disk or, when dirs is true, a directory written with a trailing
// "/" (a directory without it, or a file with it, is reported). Relative
// paths resolve against the recipe's folder. what names the argument in
// messages ("layer source", "script"). It returns the absolute path,
// without a trailing "/", and whether it is a directory; ok is false when
// a problem was reported, or, outside ScopeAll, always (the file is
// neither checked nor read).
func (s *state) localPath(attr *hcl.Attribute, src, what string, dirs bool) (abs string, isDir, ok bool) {
	if s.opts.Scope != ScopeAll {
		return "", false, false // the catalog verbs read no local files
	}
	wantDir := strings.HasSuffix(src, "/")
	p := s.resolve(src)
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) && dirs:
		s.attrError(attr, fmt.Sprintf("no such file or directory %q", src),
			fmt.Sprintf("The %s is read from disk; paths are relative to %s (the recipe's folder).", what, s.dir))
		return "", false, false
	case errors.Is(err, fs.ErrNotExist):
		s.attrError(attr, fmt.Sprintf("no such file %q", src),
			fmt.Sprintf("The %s is read from disk; paths are relative to %s (the recipe's folder).", what, s.dir))
		return "", false, false
	case err != nil:
		s.attrError(attr, fmt.Sprintf("reading %s %q: %v", what, src, err), "Check the path and its permissions.")
		return "", false, false
	case fi.IsDir() && !dirs:
		s.attrError(attr, fmt.Sprintf("%s %q is a directory", what, src),
			fmt.Sprintf("The %s is a single file; name the file, such as %q.", what, strings.TrimRight(src, "/")+"/FILE"))
		return "", false, false
	case fi.IsDir() && !wantDir:
		s.attrError(attr, fmt.Sprintf("directory source %q must end with \"/\"", src),
			fmt.Sprintf("%q is a directory; write %s = %q to copy its contents.", src, attr.Name, src+"/"))
		return "", false, false
	case !fi.IsDir() && wantDir && !dirs:
		s.attrError(attr, fmt.Sprintf("%s %q ends with \"/\"", what, src),
			fmt.Sprintf("The %s is a file; write %s = %q.", what, attr.Name, strings.TrimRight(src, "/")))
		return "", false, false
	case !fi.IsDir() && wantDir:
		s.attrError(attr, fmt.Sprintf("%s %q is not a directory", what, src),
			fmt.Sprintf("A trailing \"/\" means a directory; write %s = %q to name the file.", attr.Name, strings.TrimRight(src, "/")))
		return "", false, false
	case !fi.IsDir() && !fi.Mode().IsRegular():
		detail := "Name a regular file."
		if dirs {
			detail = "Name a regular file, or a directory ending in \"/\"."
		}
		s.attrError(attr, fmt.Sprintf("%s %q is not a regular file", what, src), detail)
		return "", false, false
	}
	return p, fi.IsDir(), true
}

// mode reads a permission mode: an octal string ("0755", "755", "0o755")
// or a number whose decimal digits are read as octal, as chmod does
// (HCL has no octal literals, so mode = 0755 arrives as 755).
func (s *state) mode(attr *hcl.Attribute) (uint32, bool) {
	val, ok := s.value(attr.Expr)
	if !ok {
		return 0, false
	}
	var text string
	switch {
	case val.IsNull():
		return 0, false
	case val.Type() == cty.String:
		text = strings.TrimPrefix(strings.TrimPrefix(val.AsString(), "0o"), "0O")
	case val.Type() == cty.Number:
		bf := val.AsBigFloat()
		if !bf.IsInt() || bf.Sign() < 0 {
			text = bf.Text('g', -1) + "!" // not octal digits: rejected below
		} else {
			text = bf.Text('f', 0)
		}
	default:
		s.attrError(attr, "invalid type for \"mode\"", fmt.Sprintf("Expected an octal string such as \"0755\", got %s.", typeName(val)))
		return 0, false
	}
	m, err := strconv.ParseUint(text, 8, 32)
	if err != nil || m > 0o7777 {
		s.attrError(attr, "invalid mode", `A mode is an octal permission from 0 to 07777, written as a string such as "0755" or "0644".`)
		return 0, false
	}
	return uint32(m), true
}

// id reads a uid or gid: a whole number from 0 to 2^31-1.
func (s *state) id(attr *hcl.Attribute) (int, bool) {
	val, ok := s.value(attr.Expr)
	if !ok || val.IsNull() {
		return 0, false
	}
	n, err := convert.Convert(val, cty.Number)
	if err != nil {
		s.attrError(attr, fmt.Sprintf("invalid type for %q", attr.Name), fmt.Sprintf("Expected a whole number such as 1000, got %s.", typeName(val)))
		return 0, false
	}
	bf := n.AsBigFloat()
	if !bf.IsInt() || bf.Sign() < 0 || bf.Cmp(big.NewFloat(math.MaxInt32)) > 0 {
		s.attrError(attr, fmt.Sprintf("invalid %s", attr.Name), fmt.Sprintf("%s is a whole number from 0 to %d, such as 1000.", attr.Name, math.MaxInt32))
		return 0, false
	}
	i, _ := bf.Int64()
	return int(i), true
}

// normalizePort turns "PORT[/PROTO]" into "PORT/PROTO", PROTO defaulting to tcp.
func normalizePort(p string) (string, bool) {
	m := portRE.FindStringSubmatch(p)
	if m == nil {
		return "", false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 1 || n > 65535 {
		return "", false
	}
	proto := m[2]
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return "", false
	}
	return fmt.Sprintf("%d/%s", n, proto), true
}

// required returns the named attribute, or reports it missing at the
// block's header (the block has no better place to point at).
func (s *state) required(b *hcl.Block, content *hcl.BodyContent, attrName, example string) *hcl.Attribute {
	if attr := content.Attributes[attrName]; attr != nil {
		return attr
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("missing required argument %q", attrName),
		Detail:   fmt.Sprintf("A %s block needs %s; add, for example, %s.", b.Type, attrName, example),
		Subject:  b.DefRange.Ptr(),
	})
	return nil
}

func (s *state) attrError(attr *hcl.Attribute, summary, detail string) {
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  attr.Expr.Range().Ptr(),
	})
}

// value evaluates expr in the recipe's context. ok is false when the
// evaluation failed (the errors are reported) or the value is unknown
// because of an error reported elsewhere.
func (s *state) value(expr hcl.Expression) (cty.Value, bool) {
	val, diags := expr.Value(s.ctx)
	s.addAll(diags)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	val, _ = val.UnmarkDeep()
	if !val.IsWhollyKnown() {
		return cty.NilVal, false
	}
	return val, true
}

// stringValue evaluates attr as a string. Unless strict, numbers and
// bools are converted (user = 1000 means "1000"). hint says how to fix a
// wrong type.
func (s *state) stringValue(attr *hcl.Attribute, strict bool, hint string) (string, bool) {
	val, ok := s.value(attr.Expr)
	if !ok {
		return "", false
	}
	if val.IsNull() {
		s.attrError(attr, fmt.Sprintf("missing value for %q", attr.Name), "Expected a string, got null.")
		return "", false
	}
	if val.Type() != cty.String && (strict || !val.Type().IsPrimitiveType()) {
		detail := fmt.Sprintf("Expected a string, got %s.", typeName(val))
		if hint != "" {
			detail += " To fix it, " + hint + "."
		}
		s.attrError(attr, fmt.Sprintf("invalid type for %q", attr.Name), detail)
		return "", false
	}
	str, err := convert.Convert(val, cty.String)
	if err != nil {
		s.attrError(attr, fmt.Sprintf("invalid type for %q", attr.Name), fmt.Sprintf("Expected a string: %s.", err))
		return "", false
	}
	return str.AsString(), true
}

// stringList evaluates attr as a list of strings (numbers and bools are
// converted) and returns, for each element, where it is written when the
// list is written literally (else the whole expression's range). A null
// value is treated as absent.
func (s *state) stringList(attr *hcl.Attribute) ([]string, []hcl.Range, bool) {
	val, ok := s.value(attr.Expr)
	if !ok || val.IsNull() {
		return nil, nil, false
	}
	ty := val.Type()
	if !ty.IsTupleType() && !ty.IsListType() && !ty.IsSetType() {
		s.attrError(attr, fmt.Sprintf("invalid type for %q", attr.Name),
			fmt.Sprintf("Expected a list of strings, got %s; write it in brackets, such as %s = [\"a\", \"b\"].", typeName(val), attr.Name))
		return nil, nil, false
	}
	tuple, _ := attr.Expr.(*hclsyntax.TupleConsExpr)
	var out []string
	var ranges []hcl.Range
	good := true
	i := 0
	for it := val.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		rng := attr.Expr.Range()
		if tuple != nil && i < len(tuple.Exprs) {
			rng = tuple.Exprs[i].Range()
		}
		if ev.IsNull() || !ev.Type().IsPrimitiveType() {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("invalid type for %q", attr.Name),
				Detail:   fmt.Sprintf("Expected a list of strings; element %d is %s.", i, typeName(ev)),
				Subject:  rng.Ptr(),
			})
			good = false
			continue
		}
		str, _ := convert.Convert(ev, cty.String)
		out = append(out, str.AsString())
		ranges = append(ranges, rng)
	}
	if out == nil {
		out = []string{}
	}
	return out, ranges, good
}

// stringMap evaluates attr as a map of strings (numbers and bools are
// converted). A null value is treated as absent.
func (s *state) stringMap(attr *hcl.Attribute) (map[string]string, bool) {
	val, ok := s.value(attr.Expr)
	if !ok || val.IsNull() {
		return nil, false
	}
	ty := val.Type()
	if !ty.IsObjectType() && !ty.IsMapType() {
		s.attrError(attr, fmt.Sprintf("invalid type for %q", attr.Name),
			fmt.Sprintf("Expected a map of strings, got %s; write it in braces, such as %s = { KEY = \"value\" }.", typeName(val), attr.Name))
		return nil, false
	}
	valueRanges := s.mapValueRanges(attr)
	out := make(map[string]string)
	good := true
	for it := val.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		key := k.AsString() // cty iterates maps and objects in key order
		if ev.IsNull() || !ev.Type().IsPrimitiveType() {
			rng, found := valueRanges[key]
			if !found {
				rng = attr.Expr.Range()
			}
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("invalid type for %q", attr.Name),
				Detail:   fmt.Sprintf("Expected a map of strings; the value of %q is %s.", key, typeName(ev)),
				Subject:  rng.Ptr(),
			})
			good = false
			continue
		}
		str, _ := convert.Convert(ev, cty.String)
		out[key] = str.AsString()
	}
	return out, good
}

// keyRange returns where key is written in a literal object, or the
// range of the whole expression.
func (s *state) keyRange(attr *hcl.Attribute, key string) hcl.Range {
	if rng, ok := s.objectRanges(attr, true)[key]; ok {
		return rng
	}
	return attr.Expr.Range()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// mapValueRanges returns where each value of a literal object is written.
func (s *state) mapValueRanges(attr *hcl.Attribute) map[string]hcl.Range {
	return s.objectRanges(attr, false)
}

func (s *state) objectRanges(attr *hcl.Attribute, keys bool) map[string]hcl.Range {
	out := make(map[string]hcl.Range)
	obj, ok := attr.Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return out
	}
	for _, item := range obj.Items {
		k, diags := item.KeyExpr.Value(s.ctx)
		if diags.HasErrors() || !k.IsKnown() || k.IsNull() {
			continue
		}
		k, _ = k.Unmark()
		ks, err := convert.Convert(k, cty.String)
		if err != nil {
			continue
		}
		if keys {
			out[ks.AsString()] = item.KeyExpr.Range()
		} else {
			out[ks.AsString()] = item.ValueExpr.Range()
		}
	}
	return out
}
