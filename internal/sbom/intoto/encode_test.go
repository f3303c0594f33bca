package intoto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// reference is the statement as encoding/json writes it: what Build
// wrote before encodeStatement.
func reference(t testing.TB, st Statement) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func statementOf(in Input) Statement {
	st := Statement{Type: StatementType, Subject: in.Subjects, PredicateType: SLSAProvenanceType,
		Predicate: Provenance{
			BuildDefinition: BuildDefinition{BuildType: in.BuildType, ExternalParameters: in.ExternalParameters,
				InternalParameters: in.InternalParameters, ResolvedDependencies: in.Dependencies},
			RunDetails: RunDetails{Builder: Builder{ID: BuilderID + "@" + in.BakeryVersion, Version: map[string]string{"bakery": in.BakeryVersion}}},
		}}
	if in.InvocationID != "" {
		st.Predicate.RunDetails.Metadata = &BuildMetadata{InvocationID: in.InvocationID}
	}
	return st
}

func TestEncodeStatementIsWhatEncodingJSONWrites(t *testing.T) {
	odd := []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\r", "ctrl \x01\x1f\x7f", "<html> & 'amp'",
		"ünïcödé ✓", "line sep \u2028 para \u2029", "bad utf8 \xff\xfe", "\x00"}
	var deps []ResourceDescriptor
	for i, s := range odd {
		deps = append(deps, ResourceDescriptor{Name: s, URI: "file:" + s, Digest: map[string]string{"sha256": fmt.Sprint(i), "blake3": s, s + "k": "v"}})
	}
	deps = append(deps,
		ResourceDescriptor{},
		ResourceDescriptor{URI: "only-uri"},
		ResourceDescriptor{Name: "m", MediaType: "application/x", Annotations: map[string]any{"n": 1.5, "list": []any{"a", 2, nil}, "obj": map[string]any{"x": "<y>"}}},
		ResourceDescriptor{Name: "empty maps", Digest: map[string]string{}, Annotations: map[string]any{}},
	)
	cases := map[string]Statement{
		"bake": statementOf(Input{
			Subjects:  []ResourceDescriptor{{Name: "web:1.0.0", Digest: map[string]string{"sha256": "ab"}}},
			BuildType: "https://bakery.dev/container/v1", ExternalParameters: map[string]any{"recipe": "web", "version": "1.0.0"},
			InternalParameters: map[string]any{"bakeKey": "sha256:cd", "epoch": "2026-01-01T00:00:00Z", "nested": map[string]any{"a": []string{"b"}}},
			Dependencies:       deps, BakeryVersion: "v1", InvocationID: "sha256:cd",
		}),
		"no internal parameters, dependencies or invocation": statementOf(Input{
			Subjects:  []ResourceDescriptor{{Digest: map[string]string{"sha256": "ab"}}},
			BuildType: "t", ExternalParameters: map[string]any{}, BakeryVersion: "",
		}),
		"empty metadata, no builder version, empty subject list": {Type: StatementType, Subject: []ResourceDescriptor{},
			Predicate: Provenance{BuildDefinition: BuildDefinition{ExternalParameters: map[string]any{}, ResolvedDependencies: []ResourceDescriptor{}},
				RunDetails: RunDetails{Metadata: &BuildMetadata{}}}},
		"nil subject and parameters": {},
	}
	for name, st := range cases {
		t.Run(name, func(t *testing.T) { assertEncodedAsEncodingJSON(t, st) })
	}
}

func TestEncodeStatementReportsAValueEncodingJSONRefuses(t *testing.T) {
	st := statementOf(Input{Subjects: []ResourceDescriptor{{Digest: map[string]string{"sha256": "ab"}}},
		ExternalParameters: map[string]any{"f": func() {}}})
	if _, err := encodeStatement(st); err == nil {
		t.Error("a parameter encoding/json cannot write was accepted")
	}
}

func FuzzEncodeStatement(f *testing.F) {
	f.Add("web", "file:a b", "sha256", "ab", "x")
	f.Add("\u2028", "\xff", "<", "\"", "\\\n")
	f.Fuzz(func(t *testing.T, name, uri, alg, digest, param string) {
		st := statementOf(Input{
			Subjects:           []ResourceDescriptor{{Name: name, Digest: map[string]string{alg: digest}}},
			BuildType:          uri,
			ExternalParameters: map[string]any{param: name},
			Dependencies:       []ResourceDescriptor{{Name: name, URI: uri, Digest: map[string]string{alg: digest, param: uri}, MediaType: param}},
			BakeryVersion:      param, InvocationID: digest,
		})
		assertEncodedAsEncodingJSON(t, st)
	})
}

// assertEncodedAsEncodingJSON fails t unless encodeStatement writes st
// byte for byte as encoding/json does.
func assertEncodedAsEncodingJSON(t *testing.T, st Statement) {
	t.Helper()
	got, err := encodeStatement(st)
	if err != nil {
		t.Fatal(err)
	}
	if want := reference(t, st); !bytes.Equal(got, want) {
		t.Errorf("encodeStatement differs from encoding/json:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func BenchmarkBuildStatementOf2040Files(b *testing.B) {
	var deps []ResourceDescriptor
	for i := range 2040 {
		deps = append(deps, ResourceDescriptor{Name: "input", URI: fmt.Sprintf("file:tree/src/file-%04d.txt", i),
			Digest: map[string]string{"blake3": "3f2a9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345"}})
	}
	in := Input{Subjects: []ResourceDescriptor{{Name: "x", Digest: map[string]string{"sha256": "ab"}}}, BuildType: "t", Dependencies: deps, BakeryVersion: "v"}
	for b.Loop() {
		if _, err := Build(in); err != nil {
			b.Fatal(err)
		}
	}
}
