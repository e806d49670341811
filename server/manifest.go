package server

import (
	"fmt"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/osprey-ml/osprey/engine"
)

// This file writes applied features and data sources back as osprey.dev/v1alpha1
// manifests: the registry store keeps each object as such a document, and ApplyFeature
// compares objects by it. The output is canonical — the same object always gives the same
// bytes (map keys sorted, defaults spelled out) — and engine.ParseManifests reads it back to
// an equal object.

type manifestDoc struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	Metadata   manifestMeta `yaml:"metadata"`
	Spec       any          `yaml:"spec"`
}

type manifestMeta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels,omitempty"`
}

type featureSpec struct {
	Primitive    string            `yaml:"primitive"`
	Freshness    string            `yaml:"freshness"`
	Staleness    string            `yaml:"staleness"`
	Timeout      string            `yaml:"timeout"`
	KeepPrevious *keepPreviousSpec `yaml:"keepPrevious,omitempty"`
	Keys         []string          `yaml:"keys"`
	DataSource   string            `yaml:"dataSource,omitempty"`
	Builder      builderSpec       `yaml:"builder"`
	Middlewares  []middlewareSpec  `yaml:"middlewares,omitempty"`
	Dependencies []string          `yaml:"dependencies,omitempty"`
}

type keepPreviousSpec struct {
	Versions int    `yaml:"versions"`
	Over     string `yaml:"over"`
}

type builderSpec struct {
	Kind            string            `yaml:"kind"`
	Module          string            `yaml:"module,omitempty"`
	Aggr            []string          `yaml:"aggr,omitempty"`
	AggrGranularity string            `yaml:"aggrGranularity,omitempty"`
	Config          map[string]string `yaml:"config,omitempty"`
}

type middlewareSpec struct {
	Name     string            `yaml:"name"`
	Module   string            `yaml:"module,omitempty"`
	Stages   []string          `yaml:"stages"`
	Priority int               `yaml:"priority,omitempty"`
	Config   map[string]string `yaml:"config,omitempty"`
}

type dataSourceSpec struct {
	Kind           string            `yaml:"kind"`
	Config         map[string]string `yaml:"config,omitempty"`
	KeyFields      []string          `yaml:"keyFields,omitempty"`
	TimestampField string            `yaml:"timestampField,omitempty"`
	Schema         string            `yaml:"schema,omitempty"`
}

func metadataOf(fqn string, labels map[string]string) manifestMeta {
	ns, name, _ := strings.Cut(fqn, ".")
	if len(labels) == 0 {
		labels = nil
	}
	return manifestMeta{Name: name, Namespace: ns, Labels: labels}
}

func emptyNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// featureManifest returns f as a canonical Feature manifest.
func featureManifest(f *engine.Feature) ([]byte, error) {
	spec := featureSpec{
		Primitive:    f.Primitive.String(),
		Freshness:    f.Freshness.String(),
		Staleness:    f.Staleness.String(),
		Timeout:      f.Timeout.String(),
		Keys:         f.Keys,
		DataSource:   f.DataSource,
		Dependencies: f.Dependencies,
		Builder: builderSpec{
			Kind:            f.Builder.Kind,
			Module:          f.Builder.Module,
			AggrGranularity: durationText(f.Granularity),
			Config:          emptyNil(f.Builder.Config),
		},
	}
	for _, a := range f.Aggrs.Fns() {
		spec.Builder.Aggr = append(spec.Builder.Aggr, a.String())
	}
	if kp := f.KeepPrevious; kp != nil {
		spec.KeepPrevious = &keepPreviousSpec{Versions: kp.Versions, Over: kp.Over.String()}
	}
	for _, m := range f.Middlewares {
		ms := middlewareSpec{Name: m.Name, Module: m.Module, Priority: m.Priority, Config: emptyNil(m.Config)}
		for _, st := range m.Stages {
			ms.Stages = append(ms.Stages, st.String())
		}
		spec.Middlewares = append(spec.Middlewares, ms)
	}
	return marshalManifest(manifestDoc{APIVersion: engine.APIVersion, Kind: string(engine.ManifestFeature),
		Metadata: metadataOf(f.FQN, f.Labels), Spec: spec})
}

// dataSourceManifest returns ds as a canonical DataSource manifest.
func dataSourceManifest(ds *engine.DataSource) ([]byte, error) {
	spec := dataSourceSpec{Kind: ds.Kind, Config: emptyNil(ds.Config), KeyFields: ds.KeyFields,
		TimestampField: ds.TimestampField, Schema: ds.Schema}
	return marshalManifest(manifestDoc{APIVersion: engine.APIVersion, Kind: string(engine.ManifestDataSource),
		Metadata: metadataOf(ds.FQN, ds.Labels), Spec: spec})
}

func marshalManifest(doc manifestDoc) ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode %s %s.%s: %w", doc.Kind, doc.Metadata.Namespace, doc.Metadata.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode %s %s.%s: %w", doc.Kind, doc.Metadata.Namespace, doc.Metadata.Name, err)
	}
	return []byte(b.String()), nil
}

// manifestOf returns the canonical manifest of a parsed manifest's object.
func manifestOf(m engine.Manifest) ([]byte, error) {
	if m.Feature != nil {
		return featureManifest(m.Feature)
	}
	return dataSourceManifest(m.DataSource)
}
