package intoto

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// encodeStatement returns st as encoding/json writes it with
// SetEscapeHTML(false) and SetIndent("", "  "), byte for byte, and
// several times faster: a bake's provenance lists every input file, and
// encoding/json indents by scanning its whole output once more. Values
// of type any (the build parameters, annotations) still go through
// encoding/json. TestEncodeStatementIsWhatEncodingJSONWrites holds the
// two to the same bytes.
func encodeStatement(st Statement) ([]byte, error) {
	w := &jsonWriter{}
	w.open('{')
	w.key(1, "_type")
	w.str(st.Type)
	w.comma()
	w.key(1, "subject")
	w.descriptors(1, st.Subject)
	w.comma()
	w.key(1, "predicateType")
	w.str(st.PredicateType)
	w.comma()
	w.key(1, "predicate")
	w.open('{')
	w.key(2, "buildDefinition")
	w.open('{')
	bd := st.Predicate.BuildDefinition
	w.key(3, "buildType")
	w.str(bd.BuildType)
	w.comma()
	w.key(3, "externalParameters")
	w.value(3, bd.ExternalParameters)
	if len(bd.InternalParameters) > 0 {
		w.comma()
		w.key(3, "internalParameters")
		w.value(3, bd.InternalParameters)
	}
	if len(bd.ResolvedDependencies) > 0 {
		w.comma()
		w.key(3, "resolvedDependencies")
		w.descriptors(3, bd.ResolvedDependencies)
	}
	w.close(2, '}')
	w.comma()
	w.key(2, "runDetails")
	w.open('{')
	rd := st.Predicate.RunDetails
	w.key(3, "builder")
	w.open('{')
	w.key(4, "id")
	w.str(rd.Builder.ID)
	if len(rd.Builder.Version) > 0 {
		w.comma()
		w.key(4, "version")
		w.strings(4, rd.Builder.Version)
	}
	w.close(3, '}')
	if rd.Metadata != nil {
		w.comma()
		w.key(3, "metadata")
		if rd.Metadata.InvocationID == "" {
			w.b = append(w.b, "{}"...)
		} else {
			w.open('{')
			w.key(4, "invocationId")
			w.str(rd.Metadata.InvocationID)
			w.close(3, '}')
		}
	}
	w.close(2, '}')
	w.close(1, '}')
	w.close(0, '}')
	w.b = append(w.b, '\n')
	return w.b, w.err
}

// jsonWriter appends indented JSON to b; err is the first error of
// encoding/json for a value of type any.
type jsonWriter struct {
	b   []byte
	err error
}

func (w *jsonWriter) open(c byte) { w.b = append(w.b, c) }

func (w *jsonWriter) comma() { w.b = append(w.b, ',') }

// newline starts a line indented depth levels.
func (w *jsonWriter) newline(depth int) {
	w.b = append(w.b, '\n')
	for range depth {
		w.b = append(w.b, "  "...)
	}
}

// key starts a member at depth.
func (w *jsonWriter) key(depth int, k string) {
	w.newline(depth)
	w.str(k)
	w.b = append(w.b, ": "...)
}

// close ends an object or array whose members were at depth+1.
func (w *jsonWriter) close(depth int, c byte) {
	w.newline(depth)
	w.b = append(w.b, c)
}

// str appends s as a JSON string. Strings of printable ASCII but for
// '"' and '\\', nearly all of a statement's, are written as they are;
// others are left to encoding/json, for its escaping exactly.
func (w *jsonWriter) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			w.value(0, s)
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}

// value appends v as encoding/json indents it at depth.
func (w *jsonWriter) value(depth int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent(strings.Repeat("  ", depth), "  ")
	if err := enc.Encode(v); err != nil {
		if w.err == nil {
			w.err = err
		}
		return
	}
	w.b = append(w.b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// strings appends m, a map of strings, with its keys sorted as
// encoding/json sorts them.
func (w *jsonWriter) strings(depth int, m map[string]string) {
	if len(m) == 0 {
		w.b = append(w.b, "{}"...)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.open('{')
	for i, k := range keys {
		if i > 0 {
			w.comma()
		}
		w.key(depth+1, k)
		w.str(m[k])
	}
	w.close(depth, '}')
}

// descriptors appends ds as an array at depth (null when ds is nil, as
// encoding/json writes a nil slice).
func (w *jsonWriter) descriptors(depth int, ds []ResourceDescriptor) {
	switch {
	case ds == nil:
		w.b = append(w.b, "null"...)
		return
	case len(ds) == 0:
		w.b = append(w.b, "[]"...)
		return
	}
	w.open('[')
	for i, d := range ds {
		if i > 0 {
			w.comma()
		}
		w.newline(depth + 1)
		w.descriptor(depth+1, d)
	}
	w.close(depth, ']')
}

// descriptor appends d, an object at depth.
func (w *jsonWriter) descriptor(depth int, d ResourceDescriptor) {
	n := 0
	member := func(k string) {
		if n > 0 {
			w.comma()
		}
		n++
		w.key(depth+1, k)
	}
	str := func(k, v string) {
		if v != "" {
			member(k)
			w.str(v)
		}
	}
	w.open('{')
	str("name", d.Name)
	str("uri", d.URI)
	if len(d.Digest) > 0 {
		member("digest")
		w.strings(depth+1, d.Digest)
	}
	str("mediaType", d.MediaType)
	if len(d.Annotations) > 0 {
		member("annotations")
		w.value(depth+1, d.Annotations)
	}
	if n == 0 {
		w.b = append(w.b, '}')
		return
	}
	w.close(depth, '}')
}
