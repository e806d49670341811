package manifest

import (
	"reflect"
	"slices"
	"strings"
)

// This file is the one description of the format. The wire structs below are what the
// writer encodes, field by field in this order; their yaml tags are also the fields the
// reader accepts (the field lists at the end). The reader cannot read a field the lists
// lack (fieldMap.get panics), and the round-trip test checks that it reads back every field
// the writer writes. Beyond the wire structs the reader accepts only what it explains or
// ignores: spec.builder.code (RaptorML's Python, refused with a message), the Kubernetes
// and Python fields of RaptorML manifests, and two spellings the writer never produces (a
// data source reference as a mapping, RaptorML's config list).

// document is a manifest document.
type document struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   metadata `yaml:"metadata"`
	Spec       any      `yaml:"spec"` // featureSpec, dataSourceSpec, pluginSpec or egressSpec
}

type metadata struct {
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
	Plugin          string            `yaml:"plugin,omitempty"`
	Function        string            `yaml:"function,omitempty"`
	Aggr            []string          `yaml:"aggr,omitempty"`
	AggrGranularity string            `yaml:"aggrGranularity,omitempty"`
	Config          map[string]string `yaml:"config,omitempty"`
	Storage         []storageSpec     `yaml:"storage,omitempty"`
	Messages        string            `yaml:"messages,omitempty"`
}

type storageSpec struct {
	Name             string `yaml:"name"`
	Type             string `yaml:"type"`
	ExpireAfterWrite string `yaml:"expireAfterWrite,omitempty"`
	ExpireAfterCall  string `yaml:"expireAfterCall,omitempty"`
}

type middlewareSpec struct {
	Name     string            `yaml:"name,omitempty"`
	Module   string            `yaml:"module,omitempty"`
	Plugin   string            `yaml:"plugin,omitempty"`
	Function string            `yaml:"function,omitempty"`
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

type pluginSpec struct {
	Module       string               `yaml:"module"`
	Functions    []pluginFunctionSpec `yaml:"functions"`
	Config       map[string]string    `yaml:"config,omitempty"`
	AllowedHosts []string             `yaml:"allowedHosts,omitempty"`
	Limits       *pluginLimitsSpec    `yaml:"limits,omitempty"`
}

type pluginFunctionSpec struct {
	Name string `yaml:"name"`
	Role string `yaml:"role"`
}

type pluginLimitsSpec struct {
	Timeout           string `yaml:"timeout,omitempty"`
	MemoryPages       uint32 `yaml:"memoryPages,omitempty"`
	HTTPResponseBytes int64  `yaml:"httpResponseBytes,omitempty"`
	OutputBytes       int64  `yaml:"outputBytes,omitempty"`
}

// egressSpec is an Egress's spec. Config's values are string, []string or
// map[string]string (Egress.Config).
type egressSpec struct {
	Type   string         `yaml:"type"`
	Config map[string]any `yaml:"config,omitempty"`
}

// fieldSet is the fields of one mapping of the format.
type fieldSet struct {
	// named are the fields an error names as the mapping's content (" with kind, module,
	// aggr, aggrGranularity and config"): those the writer writes, in its order.
	named []string
	// osprey are the fields an osprey.dev/v1alpha1 manifest may have.
	osprey []string
	// raptor are the fields a RaptorML manifest may have.
	raptor []string
}

// fieldsOf returns the fields of the wire struct T, with readOnly fields that the reader
// accepts in both apiVersions and raptorOnly ones it accepts (and ignores) in RaptorML
// manifests.
func fieldsOf[T any](readOnly []string, raptorOnly ...string) fieldSet {
	t := reflect.TypeFor[T]()
	var written []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		written = append(written, name)
	}
	return extend(written, readOnly, raptorOnly...)
}

// extend returns the fields of a mapping whose fields are named, readOnly, and in RaptorML
// manifests raptorOnly.
func extend(named, readOnly []string, raptorOnly ...string) fieldSet {
	osprey := append(slices.Clone(named), readOnly...)
	return fieldSet{named: named, osprey: osprey, raptor: append(slices.Clone(osprey), raptorOnly...)}
}

// with describes the content of the mapping for an error: " with a, b and c".
func (f fieldSet) with() string {
	names := f.named
	switch len(names) {
	case 0:
		return ""
	case 1:
		return " with " + names[0]
	}
	return " with " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// The reader's field lists.
var (
	topFields      = fieldsOf[document](nil, "status")
	metadataFields = fieldsOf[metadata](nil, "annotations", "uid", "resourceVersion", "generation",
		"creationTimestamp", "managedFields", "finalizers", "ownerReferences", "selfLink", "generateName",
		"deletionTimestamp", "deletionGracePeriodSeconds")
	featureFields        = fieldsOf[featureSpec](nil)
	keepPreviousFields   = fieldsOf[keepPreviousSpec](nil)
	builderFields        = fieldsOf[builderSpec]([]string{"code"}, "runtime", "packages")
	middlewareFields     = fieldsOf[middlewareSpec](nil)
	dataSourceFields     = fieldsOf[dataSourceSpec](nil, "replicas", "resources")
	pluginFields         = fieldsOf[pluginSpec](nil)
	pluginFunctionFields = fieldsOf[pluginFunctionSpec](nil)
	storageFields        = fieldsOf[storageSpec](nil)
	pluginLimitsFields   = fieldsOf[pluginLimitsSpec](nil)
	egressFields         = fieldsOf[egressSpec](nil)

	// dataSourceRefFields: spec.dataSource may be a mapping; the writer writes the FQN.
	dataSourceRefFields = extend([]string{"name", "namespace"}, nil)
	// raptorConfigFields: a RaptorML data source's config is a list of these (secretKeyRef
	// only to refuse it); the writer writes a mapping.
	raptorConfigFields = extend([]string{"name", "value"}, []string{"secretKeyRef"})
)
