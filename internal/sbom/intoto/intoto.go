// Package intoto writes bakery's provenance of an image: an in-toto
// Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
// whose predicate is SLSA Provenance v1 (https://slsa.dev/spec/v1.0/provenance).
package intoto

import (
	"fmt"
)

const (
	// MediaType is the media type (and OCI artifactType) of a statement.
	MediaType = "application/vnd.in-toto+json"
	// StatementType is the _type of an in-toto Statement v1.
	StatementType = "https://in-toto.io/Statement/v1"
	// SLSAProvenanceType is the predicateType of SLSA Provenance v1.
	SLSAProvenanceType = "https://slsa.dev/provenance/v1"
	// BuilderID identifies bakery as a builder; a statement's builder id
	// is BuilderID@VERSION, and Builder.Version repeats the version.
	BuilderID = "https://bakery.dev/bakery"
)

// ResourceDescriptor names an artifact: a subject or a material.
type ResourceDescriptor struct {
	Name        string            `json:"name,omitempty"`
	URI         string            `json:"uri,omitempty"`
	Digest      map[string]string `json:"digest,omitempty"`
	MediaType   string            `json:"mediaType,omitempty"`
	Annotations map[string]any    `json:"annotations,omitempty"`
}

// Statement is an in-toto Statement v1 with a SLSA Provenance v1 predicate.
type Statement struct {
	Type          string               `json:"_type"`
	Subject       []ResourceDescriptor `json:"subject"`
	PredicateType string               `json:"predicateType"`
	Predicate     Provenance           `json:"predicate"`
}

// Provenance is a SLSA Provenance v1 predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is what was built and from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   map[string]any       `json:"externalParameters"`
	InternalParameters   map[string]any       `json:"internalParameters,omitempty"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
}

// RunDetails is who built it.
type RunDetails struct {
	Builder  Builder        `json:"builder"`
	Metadata *BuildMetadata `json:"metadata,omitempty"`
}

// Builder identifies the builder.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// BuildMetadata is the build's metadata; bakery sets only the
// invocation id (the bake key), never wall-clock times, so that equal
// inputs give equal statements.
type BuildMetadata struct {
	InvocationID string `json:"invocationId,omitempty"`
}

// Input is what a statement says.
type Input struct {
	Subjects []ResourceDescriptor
	// BuildType is bakery's build type URI (container or machine image).
	BuildType          string
	ExternalParameters map[string]any
	InternalParameters map[string]any
	Dependencies       []ResourceDescriptor
	// BakeryVersion is the version of bakery that built it.
	BakeryVersion string
	// InvocationID identifies the bake (its bake key).
	InvocationID string
}

// Build returns the statement of in as indented JSON; equal inputs give
// equal bytes. Every subject needs a digest (the statement's rule).
func Build(in Input) ([]byte, error) {
	if len(in.Subjects) == 0 {
		return nil, fmt.Errorf("writing the provenance statement: it needs a subject")
	}
	for _, s := range in.Subjects {
		if len(s.Digest) == 0 {
			return nil, fmt.Errorf("writing the provenance statement: subject %q has no digest", s.Name)
		}
	}
	ext := in.ExternalParameters
	if ext == nil {
		ext = map[string]any{}
	}
	st := Statement{
		Type:          StatementType,
		Subject:       in.Subjects,
		PredicateType: SLSAProvenanceType,
		Predicate: Provenance{
			BuildDefinition: BuildDefinition{
				BuildType:            in.BuildType,
				ExternalParameters:   ext,
				InternalParameters:   in.InternalParameters,
				ResolvedDependencies: in.Dependencies,
			},
			RunDetails: RunDetails{
				Builder: Builder{ID: BuilderID + "@" + in.BakeryVersion, Version: map[string]string{"bakery": in.BakeryVersion}},
			},
		},
	}
	if in.InvocationID != "" {
		st.Predicate.RunDetails.Metadata = &BuildMetadata{InvocationID: in.InvocationID}
	}
	out, err := encodeStatement(st)
	if err != nil {
		return nil, fmt.Errorf("encoding the provenance statement: %w", err)
	}
	return out, nil
}
