package manifest

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/osprey-ml/osprey/engine"
)

// Feature returns f as a canonical Feature manifest (see the package documentation).
func Feature(f *engine.Feature) ([]byte, error) {
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
			Plugin:          f.Builder.Plugin,
			Function:        f.Builder.Function,
			AggrGranularity: durationText(f.Granularity),
			Config:          emptyNil(f.Builder.Config),
		},
	}
	for _, a := range f.Aggrs.Fns() {
		spec.Builder.Aggr = append(spec.Builder.Aggr, a.String())
	}
	for _, st := range f.Storage {
		spec.Builder.Storage = append(spec.Builder.Storage, storageSpec{Name: st.Name, Type: st.Primitive.String(),
			ExpireAfterWrite: durationText(st.ExpireAfterWrite), ExpireAfterCall: durationText(st.ExpireAfterCall)})
	}
	if f.Messages != engine.PrimitiveUnknown {
		spec.Builder.Messages = f.Messages.String()
	}
	if kp := f.KeepPrevious; kp != nil {
		spec.KeepPrevious = &keepPreviousSpec{Versions: kp.Versions, Over: kp.Over.String()}
	}
	for _, m := range f.Middlewares {
		ms := middlewareSpec{Name: m.Name, Module: m.Module, Plugin: m.Plugin, Function: m.Function, Priority: m.Priority, Config: emptyNil(m.Config)}
		for _, st := range m.Stages {
			ms.Stages = append(ms.Stages, st.String())
		}
		spec.Middlewares = append(spec.Middlewares, ms)
	}
	return encode(document{APIVersion: APIVersion, Kind: string(KindFeature),
		Metadata: metadataOf(f.FQN, f.Labels), Spec: spec})
}

// DataSource returns ds as a canonical DataSource manifest (see the package documentation).
func DataSource(ds *engine.DataSource) ([]byte, error) {
	spec := dataSourceSpec{Kind: ds.Kind, Config: emptyNil(ds.Config), KeyFields: ds.KeyFields,
		TimestampField: ds.TimestampField, Schema: ds.Schema}
	return encode(document{APIVersion: APIVersion, Kind: string(KindDataSource),
		Metadata: metadataOf(ds.FQN, ds.Labels), Spec: spec})
}

// Marshal returns the canonical manifest of m's object: Feature(m.Feature),
// DataSource(m.DataSource), m.Plugin's Plugin manifest or m.Egress's Egress manifest. Its
// apiVersion is APIVersion whatever m's was, so that a RaptorML manifest is written
// migrated.
func Marshal(m Manifest) ([]byte, error) {
	switch {
	case m.Feature != nil:
		return Feature(m.Feature)
	case m.DataSource != nil:
		return DataSource(m.DataSource)
	case m.Plugin != nil:
		return marshalPlugin(m.Plugin)
	case m.Egress != nil:
		return marshalEgress(m.Egress)
	}
	return nil, fmt.Errorf("%w: %s: no Feature, DataSource, Plugin or Egress to write", ErrInvalid, m.Pos)
}

// marshalEgress returns e as a canonical Egress manifest: config keys sorted, each value as
// Egress.Config holds it.
func marshalEgress(e *Egress) ([]byte, error) {
	spec := egressSpec{Type: e.Type}
	if len(e.Config) > 0 {
		spec.Config = e.Config
	}
	return encode(document{APIVersion: APIVersion, Kind: string(KindEgress),
		Metadata: metadataOf(e.FQN, e.Labels), Spec: spec})
}

// marshalPlugin returns p as a canonical Plugin manifest.
func marshalPlugin(p *Plugin) ([]byte, error) {
	spec := pluginSpec{Module: p.Module, Config: emptyNil(p.Config), AllowedHosts: p.AllowedHosts}
	for _, fn := range p.Functions {
		spec.Functions = append(spec.Functions, pluginFunctionSpec{Name: fn.Name, Role: string(fn.Role)})
	}
	if l := p.Limits; l != (PluginLimits{}) {
		spec.Limits = &pluginLimitsSpec{Timeout: durationText(l.Timeout), MemoryPages: l.MemoryPages,
			HTTPResponseBytes: l.HTTPResponseBytes, OutputBytes: l.OutputBytes}
	}
	return encode(document{APIVersion: APIVersion, Kind: string(KindPlugin),
		Metadata: metadataOf(p.FQN, p.Labels), Spec: spec})
}

func metadataOf(fqn string, labels map[string]string) metadata {
	ns, name, _ := strings.Cut(fqn, ".")
	return metadata{Name: name, Namespace: ns, Labels: emptyNil(labels)}
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

func encode(doc document) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode %s %s.%s: %w", doc.Kind, doc.Metadata.Namespace, doc.Metadata.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode %s %s.%s: %w", doc.Kind, doc.Metadata.Namespace, doc.Metadata.Name, err)
	}
	return b.Bytes(), nil
}
