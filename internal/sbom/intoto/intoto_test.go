package intoto_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/internal/sbom/intoto"
	"github.com/bakery-sh/bakery/internal/sbom/sbomtest"
)

func statement(t *testing.T) []byte {
	t.Helper()
	doc, err := intoto.Build(intoto.Input{
		Subjects:           []intoto.ResourceDescriptor{{Name: "registry.example/web:1.4.2", Digest: map[string]string{"sha256": strings.Repeat("a", 64)}}},
		BuildType:          "https://bakery.dev/container/v1",
		ExternalParameters: map[string]any{"recipe": "web", "version": "1.4.2"},
		InternalParameters: map[string]any{"bakeKey": "sha256:" + strings.Repeat("b", 64)},
		Dependencies: []intoto.ResourceDescriptor{
			{Name: "recipe", URI: "file:web.bake.hcl", Digest: map[string]string{"sha256": strings.Repeat("c", 64)}},
			{Name: "input", URI: "file:app/server", Digest: map[string]string{"sha256": strings.Repeat("d", 64), "blake3": strings.Repeat("e", 64)}},
		},
		BakeryVersion: "v1.2.3",
		InvocationID:  "sha256:" + strings.Repeat("b", 64),
	})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestStatementValidatesWithInTotoBindings(t *testing.T) {
	doc := statement(t)
	if msg := sbomtest.InToto(t, doc); msg != "" {
		t.Fatalf("the in-toto bindings reject the statement: %s\n%s", msg, doc)
	}
	// They do reject a statement without a subject digest.
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	delete(m["subject"].([]any)[0].(map[string]any), "digest")
	broken, _ := json.Marshal(m)
	if msg := sbomtest.InToto(t, broken); !strings.Contains(msg, "digest") {
		t.Errorf("a statement without a subject digest passed: %q", msg)
	}
}

func TestStatementNamesBakeryAsBuilder(t *testing.T) {
	var st intoto.Statement
	if err := json.Unmarshal(statement(t), &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Errorf("types %q %q", st.Type, st.PredicateType)
	}
	if b := st.Predicate.RunDetails.Builder; b.ID != "https://bakery.dev/bakery@v1.2.3" || b.Version["bakery"] != "v1.2.3" {
		t.Errorf("builder = %+v", b)
	}
}

func TestStatementNeedsASubjectDigest(t *testing.T) {
	_, err := intoto.Build(intoto.Input{Subjects: []intoto.ResourceDescriptor{{Name: "x"}}})
	if err == nil || !strings.Contains(err.Error(), "no digest") {
		t.Fatalf("err = %v", err)
	}
}
