package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultTimeout is the timeout of a feature whose manifest sets none.
const DefaultTimeout = time.Second

// DefaultMaxTimeout is the largest spec.timeout an Engine applies unless WithMaxTimeout says
// otherwise: a feature's timeout bounds how long one call may hold a worker, an instance and
// a state connection, so the operator, not the feature's author, sets how long that may be.
const DefaultMaxTimeout = 30 * time.Second

// Builder kinds known to the engine itself. Others (e.g. "wasm") are provided by plugins.
const (
	// BuilderSourceless is a feature with no program: values are written with Set, Append,
	// Incr and Update.
	BuilderSourceless = "sourceless"
	// BuilderPlugin is a feature computed on request by a plugin's connector function
	// (Builder.Plugin, Builder.Function); the program loader that knows plugins runs it.
	BuilderPlugin = "plugin"
)

// Feature describes a feature: its type, its time semantics, its keys, where its values come
// from and which middlewares run around its reads and writes. It is the engine's form of a
// Feature manifest.
//
// A Feature is immutable once applied; the engine hands out pointers to its own copy.
type Feature struct {
	// FQN is the fully qualified name, "namespace.name".
	FQN string
	// Primitive is the type of the feature's values. A windowed feature is int or float.
	Primitive Primitive
	// Aggrs is the set of window aggregations; non-empty makes the feature windowed.
	Aggrs AggrSet
	// Granularity is a windowed feature's bucket size.
	Granularity time.Duration
	// Freshness: a value younger than this is fresh.
	Freshness time.Duration
	// Staleness: a value at least this old is not served. It is also a windowed feature's
	// window.
	Staleness time.Duration
	// Timeout bounds a whole operation on the feature: middlewares, program and state.
	Timeout time.Duration
	// KeepPrevious, when set, keeps previous values for @-N reads.
	KeepPrevious *KeepPrevious
	// Keys names the entity keys, in the order they are encoded.
	Keys []string
	// DataSource is the FQN of the data source feeding the feature, or "".
	DataSource string
	// Builder says how values are computed.
	Builder Builder
	// Middlewares attached to the feature; the engine orders them by priority.
	Middlewares []MiddlewareRef
	// Dependencies are the FQNs of features the feature's program reads.
	Dependencies []string
	// Storage is the program's address-scoped storage (spec.builder.storage): values each
	// invocation for an entity reads and writes, kept per entity.
	Storage []StorageSpec
	// Messages is the type of the messages the feature's program receives
	// (spec.builder.messages): other programs' Send and SendAfter to its addresses, each
	// delivered as a program call of its own. PrimitiveUnknown: it receives none.
	Messages Primitive
	// Labels are free-form metadata.
	Labels map[string]string
}

// KeepPrevious keeps up to Versions previous values, each for Over after its timestamp.
type KeepPrevious struct {
	Versions int
	Over     time.Duration
}

// Builder says how a feature's values are computed.
type Builder struct {
	// Kind names the builder: "sourceless", or one registered by a plugin such as "wasm".
	Kind string
	// Module is the Wasm module's reference (path or digest) for Wasm builders.
	Module string
	// Plugin is the FQN of the plugin whose Function computes the feature, for the
	// BuilderPlugin kind.
	Plugin string
	// Function is the plugin's connector function, for the BuilderPlugin kind.
	Function string
	// Config is builder-specific configuration.
	Config map[string]string
}

// Stage is where in a feature's pipeline a middleware runs.
type Stage uint8

// Pipeline stages.
const (
	StagePreGet Stage = iota + 1
	StagePostGet
	StagePreSet
	StagePostSet
)

var stageNames = [...]string{StagePreGet: "preGet", StagePostGet: "postGet", StagePreSet: "preSet", StagePostSet: "postSet"}

// String returns the manifest spelling: preGet, postGet, preSet or postSet.
func (s Stage) String() string {
	if s >= StagePreGet && s <= StagePostSet {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", s)
}

// ParseStage parses a stage's manifest spelling (case-insensitive, "-" and "_" ignored).
func ParseStage(s string) (Stage, error) {
	norm := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s))
	for st := StagePreGet; st <= StagePostSet; st++ {
		if strings.ToLower(stageNames[st]) == norm {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown stage %q (want preGet, postGet, preSet or postSet)", s)
}

// MiddlewareRef attaches a middleware to a feature's pipeline.
type MiddlewareRef struct {
	// Name of a registered native middleware, or of a Wasm middleware when Module is set;
	// "" for a plugin's.
	Name string
	// Module is the Wasm module implementing the middleware, or "" for a native one.
	Module string
	// Plugin is the FQN of the plugin whose Function is the middleware, or "".
	Plugin string
	// Function is the plugin's middleware function, when Plugin is set.
	Function string
	// Stages the middleware runs at.
	Stages []Stage
	// Priority orders middlewares within a stage: lowest first; equal priorities keep
	// manifest order.
	Priority int
	// Config is middleware-specific configuration.
	Config map[string]string
}

// Label names the middleware in logs and errors: its name, or plugin/function.
func (m MiddlewareRef) Label() string {
	if m.Plugin != "" {
		return m.Plugin + "/" + m.Function
	}
	return m.Name
}

// Windowed reports whether the feature aggregates its values in time windows.
func (f *Feature) Windowed() bool { return f.Aggrs != 0 }

// ValueKind returns the kind of value a Get of the feature returns.
func (f *Feature) ValueKind() Kind {
	if f.Windowed() {
		return KindWindow
	}
	return Kind(f.Primitive)
}

// Clone returns a deep copy of f.
func (f *Feature) Clone() *Feature {
	c := *f
	c.Keys = slices.Clone(f.Keys)
	c.Dependencies = slices.Clone(f.Dependencies)
	c.Storage = slices.Clone(f.Storage)
	if f.KeepPrevious != nil {
		kp := *f.KeepPrevious
		c.KeepPrevious = &kp
	}
	c.Builder.Config = cloneMap(f.Builder.Config)
	c.Labels = cloneMap(f.Labels)
	c.Middlewares = make([]MiddlewareRef, len(f.Middlewares))
	for i, m := range f.Middlewares {
		m.Stages = slices.Clone(m.Stages)
		m.Config = cloneMap(m.Config)
		c.Middlewares[i] = m
	}
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// FieldError is a validation error for one field, named by its path in a manifest
// (spec.staleness, spec.keys[1], …).
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// Validate checks that f is consistent. Errors name the manifest field path and wrap
// ErrInvalidFeature.
func (f *Feature) Validate() error {
	bad := func(path, format string, args ...any) error {
		return fmt.Errorf("%w %s: %w", ErrInvalidFeature, f.FQN, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if _, err := ParseFQN(f.FQN, ""); err != nil {
		return bad("metadata.name", "%v", err)
	}
	if !f.Primitive.Valid() {
		return bad("spec.primitive", "missing or unknown (want int, float, string, bool, timestamp or a list of one)")
	}
	if f.Freshness <= 0 {
		return bad("spec.freshness", "must be a positive duration, e.g. 1m")
	}
	if f.Staleness <= 0 {
		return bad("spec.staleness", "must be a positive duration, e.g. 1h")
	}
	if f.Staleness < f.Freshness {
		return bad("spec.staleness", "must be ≥ spec.freshness (%v < %v)", f.Staleness, f.Freshness)
	}
	if f.Timeout <= 0 {
		return bad("spec.timeout", "must be a positive duration, e.g. 200ms")
	}
	if len(f.Keys) == 0 {
		return bad("spec.keys", "at least one key is required")
	}
	for i, k := range f.Keys {
		if err := ValidName(k); err != nil {
			return bad(fmt.Sprintf("spec.keys[%d]", i), "%v", err)
		}
		if slices.Index(f.Keys, k) != i {
			return bad(fmt.Sprintf("spec.keys[%d]", i), "duplicate key %q", k)
		}
	}
	if f.Windowed() {
		if !f.Primitive.IsNumeric() {
			return bad("spec.builder.aggr", "window aggregations need an int or float primitive, not %s", f.Primitive)
		}
		if f.Granularity <= 0 {
			return bad("spec.builder.aggrGranularity", "required with spec.builder.aggr: a positive duration, e.g. 1m")
		}
		if f.Granularity > f.Staleness {
			return bad("spec.builder.aggrGranularity", "must be ≤ spec.staleness, the window (%v > %v)", f.Granularity, f.Staleness)
		}
		if f.Staleness/f.Granularity > 10_000 {
			return bad("spec.builder.aggrGranularity", "the window holds %d buckets, more than 10000", f.Staleness/f.Granularity)
		}
		if f.KeepPrevious != nil {
			return bad("spec.keepPrevious", "not supported on a windowed feature")
		}
	} else if f.Granularity != 0 {
		return bad("spec.builder.aggrGranularity", "set without spec.builder.aggr")
	}
	if kp := f.KeepPrevious; kp != nil {
		if kp.Versions < 1 || kp.Versions > MaxVersion {
			return bad("spec.keepPrevious.versions", "must be between 1 and %d", MaxVersion)
		}
		if kp.Over <= 0 {
			return bad("spec.keepPrevious.over", "must be a positive duration, e.g. 24h")
		}
	}
	if f.DataSource != "" {
		if _, err := ParseFQN(f.DataSource, ""); err != nil {
			return bad("spec.dataSource", "%v", err)
		}
	}
	if f.Builder.Kind == "" {
		return bad("spec.builder.kind", "missing")
	}
	for i, d := range f.Dependencies {
		if _, err := ParseFQN(d, ""); err != nil {
			return bad(fmt.Sprintf("spec.dependencies[%d]", i), "%v", err)
		}
		if d == f.FQN {
			return bad(fmt.Sprintf("spec.dependencies[%d]", i), "a feature cannot depend on itself")
		}
	}
	switch {
	case f.Builder.Kind == BuilderPlugin && (f.Builder.Plugin == "" || f.Builder.Function == ""):
		return bad("spec.builder.plugin", "builder kind %s needs spec.builder.plugin and spec.builder.function (the plugin's connector)", BuilderPlugin)
	case f.Builder.Kind == BuilderPlugin && f.DataSource != "":
		return bad("spec.dataSource", "a plugin connector computes the feature on request: it takes no data source")
	case f.Builder.Kind != BuilderPlugin && (f.Builder.Plugin != "" || f.Builder.Function != ""):
		return bad("spec.builder.plugin", "set with builder kind %s (a plugin connector is builder kind %s)", f.Builder.Kind, BuilderPlugin)
	}
	if f.Builder.Plugin != "" {
		if _, err := ParseFQN(f.Builder.Plugin, ""); err != nil {
			return bad("spec.builder.plugin", "%v", err)
		}
	}
	if len(f.Storage) > 0 && (f.Builder.Kind == BuilderSourceless || f.Builder.Kind == BuilderPlugin) {
		return bad("spec.builder.storage", "storage is a program's: builder kind %s runs none (it needs a Wasm program, spec.builder.module)", f.Builder.Kind)
	}
	if f.Messages != PrimitiveUnknown {
		switch {
		case !f.Messages.Valid():
			return bad("spec.builder.messages", "unknown type (want int, float, string, bool, timestamp or a list of one)")
		case f.Builder.Kind == BuilderSourceless || f.Builder.Kind == BuilderPlugin:
			return bad("spec.builder.messages", "messages are a program's: builder kind %s runs none (it needs a Wasm program, spec.builder.module)", f.Builder.Kind)
		}
	}
	for i, st := range f.Storage {
		path := fmt.Sprintf("spec.builder.storage[%d]", i)
		if err := ValidName(st.Name); err != nil {
			return bad(path+".name", "%v", err)
		}
		if j := slices.IndexFunc(f.Storage[:i], func(o StorageSpec) bool { return o.Name == st.Name }); j >= 0 {
			return bad(path+".name", "duplicate storage %q (also spec.builder.storage[%d])", st.Name, j)
		}
		if !st.Primitive.Valid() {
			return bad(path+".type", "missing or unknown (want int, float, string, bool, timestamp or a list of one)")
		}
		switch {
		case st.ExpireAfterWrite < 0:
			return bad(path+".expireAfterWrite", "must be a positive duration, e.g. 30m")
		case st.ExpireAfterCall < 0:
			return bad(path+".expireAfterCall", "must be a positive duration, e.g. 30m")
		case st.ExpireAfterWrite > 0 && st.ExpireAfterCall > 0:
			return bad(path+".expireAfterCall", "set with expireAfterWrite: a value expires after its last write or after the last call, not both")
		}
	}
	for i, m := range f.Middlewares {
		switch {
		case m.Plugin != "" && (m.Name != "" || m.Module != ""):
			return bad(fmt.Sprintf("spec.middlewares[%d].plugin", i), "a plugin's middleware takes no name or module (it is the plugin's function)")
		case m.Plugin != "" && m.Function == "":
			return bad(fmt.Sprintf("spec.middlewares[%d].function", i), "missing: the plugin's middleware function")
		case m.Plugin == "" && m.Function != "":
			return bad(fmt.Sprintf("spec.middlewares[%d].function", i), "set without spec.middlewares[%d].plugin", i)
		case m.Plugin != "":
			if _, err := ParseFQN(m.Plugin, ""); err != nil {
				return bad(fmt.Sprintf("spec.middlewares[%d].plugin", i), "%v", err)
			}
		case m.Name == "":
			return bad(fmt.Sprintf("spec.middlewares[%d].name", i), "missing (or plugin and function, for a plugin's middleware)")
		}
		if len(m.Stages) == 0 {
			return bad(fmt.Sprintf("spec.middlewares[%d].stages", i), "at least one of preGet, postGet, preSet, postSet")
		}
		for j, st := range m.Stages {
			if st < StagePreGet || st > StagePostSet {
				return bad(fmt.Sprintf("spec.middlewares[%d].stages[%d]", i, j), "unknown stage %d", st)
			}
		}
	}
	return nil
}
