package recipes

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-cty-funcs/collection"
	"github.com/hashicorp/go-cty-funcs/encoding"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// FunctionNames lists the functions available in recipe expressions, in
// alphabetical order. They are those of Packer's HCL2 templates that
// evaluate the same on every run (no uuidv4, bcrypt or rsadecrypt), with
// file functions relative to the recipe's folder.
func FunctionNames() []string {
	s := newState(NewLoader(), "", "/", Options{})
	names := make([]string, 0, len(s.functions()))
	for n := range s.functions() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// functions returns the function table for one recipe. Functions that
// touch the filesystem resolve relative paths against the recipe's
// folder; env() reads Options.Env and timestamp() Options.Now.
func (s *state) functions() map[string]function.Function {
	return map[string]function.Function{
		// numbers
		"abs":      stdlib.AbsoluteFunc,
		"ceil":     stdlib.CeilFunc,
		"floor":    stdlib.FloorFunc,
		"log":      stdlib.LogFunc,
		"max":      stdlib.MaxFunc,
		"min":      stdlib.MinFunc,
		"parseint": stdlib.ParseIntFunc,
		"pow":      stdlib.PowFunc,
		"signum":   stdlib.SignumFunc,

		// strings
		"chomp":         stdlib.ChompFunc,
		"format":        stdlib.FormatFunc,
		"formatlist":    stdlib.FormatListFunc,
		"indent":        stdlib.IndentFunc,
		"join":          stdlib.JoinFunc,
		"lower":         stdlib.LowerFunc,
		"regex":         stdlib.RegexFunc,
		"regexall":      stdlib.RegexAllFunc,
		"regex_replace": stdlib.RegexReplaceFunc,
		"replace":       stdlib.ReplaceFunc,
		"split":         stdlib.SplitFunc,
		"strrev":        stdlib.ReverseFunc,
		"substr":        stdlib.SubstrFunc,
		"title":         stdlib.TitleFunc,
		"trim":          stdlib.TrimFunc,
		"trimprefix":    stdlib.TrimPrefixFunc,
		"trimspace":     stdlib.TrimSpaceFunc,
		"trimsuffix":    stdlib.TrimSuffixFunc,
		"upper":         stdlib.UpperFunc,

		// collections
		"chunklist":       stdlib.ChunklistFunc,
		"coalesce":        collection.CoalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"flatten":         stdlib.FlattenFunc,
		"keys":            stdlib.KeysFunc,
		"length":          lengthFunc,
		"lookup":          stdlib.LookupFunc,
		"merge":           stdlib.MergeFunc,
		"range":           stdlib.RangeFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setproduct":      stdlib.SetProductFunc,
		"setunion":        stdlib.SetUnionFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,

		// encoding
		"base64decode": encoding.Base64DecodeFunc,
		"base64encode": encoding.Base64EncodeFunc,
		"csvdecode":    stdlib.CSVDecodeFunc,
		"jsondecode":   stdlib.JSONDecodeFunc,
		"jsonencode":   stdlib.JSONEncodeFunc,
		"urlencode":    encoding.URLEncodeFunc,

		// type conversion
		"tobool":   stdlib.MakeToFunc(cty.Bool),
		"tolist":   stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":    stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber": stdlib.MakeToFunc(cty.Number),
		"toset":    stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring": stdlib.MakeToFunc(cty.String),
		"try":      tryfunc.TryFunc,
		"can":      tryfunc.CanFunc,

		// hashing
		"md5":    hashFunc(md5.New),
		"sha1":   hashFunc(sha1.New),
		"sha256": hashFunc(sha256.New),
		"sha512": hashFunc(sha512.New),

		// time
		"formatdate": stdlib.FormatDateFunc,
		"timeadd":    stdlib.TimeAddFunc,
		"timestamp":  s.timestampFunc(),

		// filesystem and environment
		"abspath":    s.abspathFunc(),
		"basename":   pathFunc(filepath.Base),
		"dirname":    pathFunc(filepath.Dir),
		"env":        s.envFunc(),
		"file":       s.fileFunc(),
		"fileexists": s.fileExistsFunc(),
	}
}

// lengthFunc is length() as in Packer: the number of characters of a
// string, or of elements of a collection.
var lengthFunc = function.New(&function.Spec{
	Description: "Returns the number of characters in a string or of elements in a collection.",
	Params: []function.Parameter{{
		Name:             "value",
		Type:             cty.DynamicPseudoType,
		AllowDynamicType: true,
		AllowUnknown:     true,
	}},
	Type: function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		if v.Type() == cty.String {
			return stdlib.Strlen(v)
		}
		return stdlib.Length(v)
	},
})

func hashFunc(h func() hash.Hash) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the hex-encoded hash of a string's UTF-8 bytes.",
		Params:      []function.Parameter{{Name: "str", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			d := h()
			d.Write([]byte(args[0].AsString()))
			return cty.StringVal(hex.EncodeToString(d.Sum(nil))), nil
		},
	})
}

func pathFunc(f func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(f(args[0].AsString())), nil
		},
	})
}

// resolve makes p absolute, relative to the recipe's folder.
func (s *state) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(s.dir, filepath.FromSlash(p))
}

func (s *state) abspathFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Returns the absolute form of a path, relative paths being resolved against the recipe's folder.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(filepath.ToSlash(s.resolve(args[0].AsString()))), nil
		},
	})
}

func (s *state) fileFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Returns the content of a UTF-8 text file; relative paths are resolved against the recipe's folder.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			b, err := os.ReadFile(s.resolve(p))
			switch {
			case errors.Is(err, fs.ErrNotExist) && s.opts.Scope != ScopeAll:
				// The catalog verbs run where the recipe's files may be
				// missing: the value is unknown (checkNeeded).
				if !slices.Contains(s.missingFiles, p) {
					s.missingFiles = append(s.missingFiles, p)
				}
				return cty.UnknownVal(cty.String), nil
			case errors.Is(err, fs.ErrNotExist):
				return cty.NilVal, fmt.Errorf("no such file %q; paths are relative to %s (the recipe's folder)", p, s.dir)
			case err != nil:
				return cty.NilVal, fmt.Errorf("reading %q: %w", p, err)
			case !utf8.Valid(b):
				return cty.NilVal, fmt.Errorf("%q is not valid UTF-8 text; file() reads text files only, so add binary files as a layer source", p)
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

func (s *state) fileExistsFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Returns whether a regular file exists at a path; relative paths are resolved against the recipe's folder.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			fi, err := os.Stat(s.resolve(p))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return cty.False, nil
			case err != nil:
				return cty.NilVal, fmt.Errorf("checking %q: %w", p, err)
			case !fi.Mode().IsRegular():
				return cty.NilVal, fmt.Errorf("%q exists but is not a regular file", p)
			}
			return cty.True, nil
		},
	})
}

func (s *state) envFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Returns the value of an environment variable, or \"\" when it is not set.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(s.env[args[0].AsString()]), nil
		},
	})
}

func (s *state) timestampFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Returns the current time in RFC 3339 format, in UTC.",
		Params:      []function.Parameter{},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(_ []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(s.opts.Now().UTC().Format(time.RFC3339)), nil
		},
	})
}
