package engine

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Manifest API versions.
const (
	// APIVersion is the apiVersion of Osprey's own manifests.
	APIVersion = "osprey.dev/v1alpha1"
	// RaptorAPIVersion is the apiVersion of RaptorML manifests, accepted for migration:
	// Feature and DataSource manifests load where their fields map onto Osprey's (see
	// docs/migrating-from-raptor.md).
	RaptorAPIVersion = "k8s.raptor.ml/v1alpha1"
)

// MaxManifestSize is the largest manifest input, in bytes, that ParseManifests and
// LoadManifests accept.
const MaxManifestSize = 8 << 20

// manifestNodeBudget bounds the YAML nodes visited in one document, counting each alias
// expansion, so that an alias bomb cannot make a small input expensive.
const manifestNodeBudget = 100_000

// maxManifestErrors bounds the errors reported for one input.
const maxManifestErrors = 100

// manifestBuilderWasm is the builder kind a manifest gets when it names a module but no kind.
const manifestBuilderWasm = "wasm"

// ManifestKind is the kind of a manifest.
type ManifestKind string

// Manifest kinds.
const (
	ManifestFeature    ManifestKind = "Feature"
	ManifestDataSource ManifestKind = "DataSource"
)

// ManifestPosition locates a manifest, or an error in one.
type ManifestPosition struct {
	// Source names the input: a file path, or what the caller of ParseManifests passed.
	Source string
	// Document is the 1-based index of the YAML document in the source, counting empty
	// documents; 0 for an error about the whole source.
	Document int
	// Line is the 1-based line in the source, or 0 when unknown.
	Line int
}

// String formats the position as "fraud.yaml: document 2 (line 14)".
func (p ManifestPosition) String() string {
	var b strings.Builder
	b.WriteString(p.Source)
	switch {
	case p.Document > 0:
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString("document ")
		b.WriteString(strconv.Itoa(p.Document))
		if p.Line > 0 {
			b.WriteString(" (line ")
			b.WriteString(strconv.Itoa(p.Line))
			b.WriteByte(')')
		}
	case p.Line > 0:
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(p.Line))
	}
	return b.String()
}

// Manifest is one parsed and validated manifest: a Feature or a DataSource.
type Manifest struct {
	// Kind says which of Feature and DataSource is set.
	Kind ManifestKind
	// APIVersion is the manifest's apiVersion: APIVersion or RaptorAPIVersion.
	APIVersion string
	// Feature is set when Kind is ManifestFeature.
	Feature *Feature
	// DataSource is set when Kind is ManifestDataSource.
	DataSource *DataSource
	// Pos is where the manifest's document starts.
	Pos ManifestPosition
}

// FQN returns the fully qualified name of the manifest's feature or data source.
func (m Manifest) FQN() string {
	switch {
	case m.Feature != nil:
		return m.Feature.FQN
	case m.DataSource != nil:
		return m.DataSource.FQN
	}
	return ""
}

// ManifestError is an error in a manifest. It wraps ErrInvalidManifest and, when there is
// one, the underlying cause (for example an error from Feature.Validate, which wraps a
// *FieldError). Its message reads
//
//	fraud.yaml: document 2 (line 14): spec.staleness: must be ≥ spec.freshness (1m0s < 1h0m0s)
type ManifestError struct {
	// Pos locates the error; its Line is the offending field's line where known.
	Pos ManifestPosition
	// Path is the field path, e.g. spec.keys[1] or metadata.labels["app.kubernetes.io/name"];
	// "" for an error about the whole document or source.
	Path string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying cause, or nil.
	Err error
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	for _, s := range [...]string{e.Path, e.Msg} {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(s)
	}
	return b.String()
}

// Unwrap returns ErrInvalidManifest and the cause, if any.
func (e *ManifestError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalidManifest, e.Err}
	}
	return []error{ErrInvalidManifest}
}

// ParseManifests parses the YAML documents in data ("---" separated; empty documents are
// skipped) into Feature and DataSource manifests, and validates them. source names data in
// error messages (usually a file name).
//
// Every field is checked and unknown fields are rejected. On error ParseManifests returns no
// manifests and an error listing the problems of every document (errors.Join of
// *ManifestError, each wrapping ErrInvalidManifest); for an input with one problem the error
// is that *ManifestError itself.
func ParseManifests(data []byte, source string) ([]Manifest, error) {
	ms, errs := parseManifests(data, source)
	errs = append(errs, manifestDuplicates(ms)...)
	if len(errs) > 0 {
		return nil, joinManifestErrors(errs)
	}
	return ms, nil
}

// LoadManifests reads and parses manifest files. A path naming a directory loads the
// directory's *.yaml and *.yml files (not its subdirectories, nor hidden files), in name
// order; a path naming a file loads it whatever its extension. The result keeps the order
// of paths, then of files, then of documents. A feature or data source defined twice is an
// error.
//
// As with ParseManifests, on error no manifests are returned and the error lists every
// problem found; each wraps ErrInvalidManifest (and, for a file that cannot be read, the
// *fs.PathError's cause, e.g. fs.ErrNotExist).
func LoadManifests(paths ...string) ([]Manifest, error) {
	var files []string
	var errs []error
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, manifestFileError(p, err))
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			errs = append(errs, manifestFileError(p, err))
			continue
		}
		n := 0
		for _, e := range entries {
			name := e.Name()
			ext := strings.ToLower(filepath.Ext(name))
			if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			full := filepath.Join(p, name)
			if e.IsDir() {
				continue
			}
			if e.Type()&fs.ModeSymlink != 0 {
				if st, err := os.Stat(full); err == nil && st.IsDir() {
					continue
				}
			}
			files = append(files, full)
			n++
		}
		if n == 0 {
			errs = append(errs, &ManifestError{Pos: ManifestPosition{Source: p}, Msg: "directory has no *.yaml or *.yml files"})
		}
	}
	var all []Manifest
	for _, file := range files {
		data, err := readManifestFile(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ms, perrs := parseManifests(data, file)
		all = append(all, ms...)
		errs = append(errs, perrs...)
	}
	errs = append(errs, manifestDuplicates(all)...)
	if len(errs) > 0 {
		return nil, joinManifestErrors(errs)
	}
	return all, nil
}

func readManifestFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, manifestFileError(file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, manifestFileError(file, err)
	}
	return data, nil
}

// manifestFileError reports a file that cannot be read, without repeating its path.
func manifestFileError(path string, err error) error {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	return &ManifestError{Pos: ManifestPosition{Source: path}, Msg: msg, Err: err}
}

func joinManifestErrors(errs []error) error {
	if len(errs) > maxManifestErrors {
		more := len(errs) - maxManifestErrors
		errs = append(errs[:maxManifestErrors:maxManifestErrors], &ManifestError{Msg: fmt.Sprintf("… and %d more errors", more)})
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// manifestDuplicates reports features, and data sources, defined more than once.
func manifestDuplicates(ms []Manifest) []error {
	type key struct {
		kind ManifestKind
		fqn  string
	}
	var errs []error
	first := make(map[key]ManifestPosition, len(ms))
	for _, m := range ms {
		k := key{m.Kind, m.FQN()}
		if p, ok := first[k]; ok {
			errs = append(errs, &ManifestError{Pos: m.Pos, Path: "metadata.name",
				Msg: fmt.Sprintf("%s %s is defined twice (first at %s)", m.Kind, k.fqn, p)})
			continue
		}
		first[k] = m.Pos
	}
	return errs
}

// parseManifests parses data without the duplicate check, which LoadManifests runs across
// files.
func parseManifests(data []byte, source string) ([]Manifest, []error) {
	if len(data) > MaxManifestSize {
		return nil, []error{&ManifestError{Pos: ManifestPosition{Source: source},
			Msg: fmt.Sprintf("larger than %d bytes", MaxManifestSize)}}
	}
	var ms []Manifest
	var errs []error
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 1; ; doc++ {
		var node yaml.Node
		if err := decodeYAML(dec, &node); err != nil {
			if err == io.EOF {
				break
			}
			errs = append(errs, yamlSyntaxError(source, doc, err))
			break // the decoder cannot resynchronise after a syntax error
		}
		d := manifestDecoder{pos: ManifestPosition{Source: source, Document: doc}, lines: map[string]int{}}
		m, ok := d.document(&node)
		errs = append(errs, d.sortedErrors()...)
		if ok {
			ms = append(ms, m)
		}
	}
	return ms, errs
}

// decodeYAML decodes the next document, turning a panic inside the YAML library into an
// error: a hostile manifest must not take the process down.
func decodeYAML(dec *yaml.Decoder, node *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal error: %v", r)
		}
	}()
	return dec.Decode(node)
}

// yamlSyntaxError turns the YAML library's "yaml: line 3: msg" into a ManifestError.
func yamlSyntaxError(source string, doc int, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 {
				line, msg = n, after
			}
		}
	}
	return &ManifestError{Pos: ManifestPosition{Source: source, Document: doc, Line: line}, Msg: "invalid YAML: " + msg, Err: err}
}

// manifestAbort is panicked with when a document exceeds manifestNodeBudget, and recovered
// by manifestDecoder.document.
type manifestAbort struct{}

// manifestDecoder decodes one YAML document. It collects every error it finds, and records
// the line of every field it visits (the line of its key; for a list element, of the element)
// so that errors found later, by Validate, and missing fields can be located.
type manifestDecoder struct {
	pos      ManifestPosition
	raptor   bool
	rootLine int
	errs     []*ManifestError
	lines    map[string]int
	budget   int
}

func (d *manifestDecoder) failf(n *yaml.Node, path, format string, args ...any) {
	d.failErr(n, path, fmt.Sprintf(format, args...), nil)
}

func (d *manifestDecoder) failErr(n *yaml.Node, path, msg string, cause error) {
	pos := d.pos
	if n != nil && n.Line > 0 {
		pos.Line = n.Line
	} else {
		pos.Line = d.lineOf(path)
	}
	d.errs = append(d.errs, &ManifestError{Pos: pos, Path: path, Msg: msg, Err: cause})
}

// sortedErrors returns the document's errors in line order.
func (d *manifestDecoder) sortedErrors() []error {
	slices.SortStableFunc(d.errs, func(a, b *ManifestError) int { return cmp.Compare(a.Pos.Line, b.Pos.Line) })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errs
}

// lineOf returns the line of the field at path, or of its nearest ancestor that was seen.
func (d *manifestDecoder) lineOf(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		if path == "" {
			return d.rootLine
		}
		path = manifestParent(path)
	}
}

// manifestParent returns the path of the field holding path: spec for spec.keys,
// spec.keys for spec.keys[1].
func manifestParent(path string) string {
	i := strings.LastIndexByte(path, '.')
	if strings.HasSuffix(path, "]") {
		i = strings.LastIndexByte(path, '[')
	}
	if i < 0 {
		return ""
	}
	return path[:i]
}

// manifestJoin returns the path of field key inside path.
func manifestJoin(path, key string) string {
	simple := key != ""
	for i := 0; i < len(key) && simple; i++ {
		c := key[i]
		simple = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	switch {
	case !simple:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

func manifestIndex(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// resolve follows aliases and charges the node to the document's budget.
func (d *manifestDecoder) resolve(n *yaml.Node) *yaml.Node {
	for {
		d.budget++
		if d.budget > manifestNodeBudget {
			panic(manifestAbort{})
		}
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
}

func yamlIsNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// manifestField is one key: value pair of a mapping.
type manifestField struct {
	key, val *yaml.Node
	path     string
}

// manifestMap is a decoded mapping: its fields by name, in document order.
type manifestMap struct {
	node   *yaml.Node
	path   string
	fields map[string]manifestField
	order  []string
}

// get returns the field name unless it is absent or null.
func (m manifestMap) get(name string) (manifestField, bool) {
	f, ok := m.fields[name]
	if !ok || yamlIsNull(f.val) {
		return manifestField{}, false
	}
	return f, true
}

// mapping decodes n as a mapping, resolving merge keys (<<) and reporting duplicate and
// non-string keys. what describes the expected content for the error when n is no mapping.
func (d *manifestDecoder) mapping(n *yaml.Node, path, what string) (manifestMap, bool) {
	n = d.resolve(n)
	m := manifestMap{node: n, path: path, fields: map[string]manifestField{}}
	if n.Kind != yaml.MappingNode {
		d.failf(n, path, "must be a mapping%s, not %s", what, describeYAMLNode(n))
		return m, false
	}
	d.collect(&m, n, true, 0)
	return m, true
}

func (d *manifestDecoder) collect(m *manifestMap, n *yaml.Node, explicit bool, depth int) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.failf(k, m.path, "field names must be strings, not %s", describeYAMLNode(k))
			continue
		}
		name := k.Value
		path := manifestJoin(m.path, name)
		if prev, dup := m.fields[name]; dup {
			if explicit {
				d.failf(k, path, "duplicate field (first at line %d)", prev.key.Line)
			}
			continue
		}
		rv := d.resolve(v)
		m.fields[name] = manifestField{key: k, val: rv, path: path}
		m.order = append(m.order, name)
		d.lines[path] = k.Line
	}
	// Merged fields never override fields of the mapping itself; earlier merges win.
	for _, v := range merges {
		v = d.resolve(v)
		var srcs []*yaml.Node
		switch v.Kind {
		case yaml.MappingNode:
			srcs = []*yaml.Node{v}
		case yaml.SequenceNode:
			srcs = v.Content
		}
		if len(srcs) == 0 && !yamlIsNull(v) {
			d.failf(v, m.path, "a merge (<<) must name a mapping or a list of mappings, not %s", describeYAMLNode(v))
		}
		for _, s := range srcs {
			s = d.resolve(s)
			if s.Kind != yaml.MappingNode {
				d.failf(s, m.path, "a merge (<<) must name a mapping or a list of mappings, not %s", describeYAMLNode(s))
				continue
			}
			if depth > 32 {
				d.failf(s, m.path, "merges (<<) nest more than 32 deep (does an anchor merge itself?)")
				return
			}
			d.collect(m, s, false, depth+1)
		}
	}
}

// allow reports the fields of m that are not in known.
func (d *manifestDecoder) allow(m manifestMap, known ...string) {
	for _, name := range m.order {
		if slices.Contains(known, name) {
			continue
		}
		f := m.fields[name]
		msg := "unknown field"
		if s := manifestSuggest(name, known); s != "" {
			msg += " (did you mean " + s + "?)"
		}
		d.failf(f.key, f.path, "%s", msg)
	}
}

// manifestSuggest returns the known name closest to name, or "" if none is close.
func manifestSuggest(name string, known []string) string {
	if len(name) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k
		}
		if dist := manifestEditDistance(strings.ToLower(name), strings.ToLower(k)); dist < bestDist && dist < len(k)/2+1 {
			best, bestDist = k, dist
		}
	}
	return best
}

// manifestEditDistance is the Levenshtein distance between a and b, counted in bytes.
func manifestEditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describeYAMLNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if yamlIsNull(n) {
			return "null"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return strconv.Quote(v)
	case yaml.DocumentNode:
		return "a document"
	}
	return "an alias"
}

// str decodes a scalar as a string: any scalar but null is taken as written.
func (d *manifestDecoder) str(f manifestField) (string, bool) {
	if f.val.Kind != yaml.ScalarNode || yamlIsNull(f.val) {
		d.failf(f.val, f.path, "must be a string, not %s", describeYAMLNode(f.val))
		return "", false
	}
	return f.val.Value, true
}

func (d *manifestDecoder) duration(f manifestField) (time.Duration, bool) {
	s, ok := d.str(f)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.failf(f.val, f.path, "invalid duration %q (want a Go duration such as 500ms, 10s, 1m or 720h)", s)
		return 0, false
	}
	return v, true
}

func (d *manifestDecoder) integer(f manifestField) (int, bool) {
	if f.val.Kind == yaml.ScalarNode && (f.val.Tag == "!!int" || f.val.Tag == "!!str") {
		v, err := strconv.ParseInt(strings.ReplaceAll(f.val.Value, "_", ""), 0, 32)
		if err == nil {
			return int(v), true
		}
		if errors.Is(err, strconv.ErrRange) {
			d.failf(f.val, f.path, "%s is out of range", f.val.Value)
			return 0, false
		}
	}
	d.failf(f.val, f.path, "must be an integer, not %s", describeYAMLNode(f.val))
	return 0, false
}

// list decodes a sequence, returning its elements (aliases resolved) and their paths.
func (d *manifestDecoder) list(f manifestField) ([]manifestField, bool) {
	if f.val.Kind != yaml.SequenceNode {
		d.failf(f.val, f.path, "must be a list, not %s", describeYAMLNode(f.val))
		return nil, false
	}
	out := make([]manifestField, len(f.val.Content))
	for i, e := range f.val.Content {
		e = d.resolve(e)
		path := manifestIndex(f.path, i)
		d.lines[path] = e.Line
		out[i] = manifestField{key: e, val: e, path: path}
	}
	return out, true
}

// strs decodes a list of strings.
func (d *manifestDecoder) strs(f manifestField) ([]string, []manifestField, bool) {
	elems, ok := d.list(f)
	if !ok {
		return nil, nil, false
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		s, eok := d.str(e)
		ok = ok && eok
		out = append(out, s)
	}
	return out, elems, ok
}

// stringMap decodes a mapping of strings to strings.
func (d *manifestDecoder) stringMap(f manifestField) (map[string]string, bool) {
	m, ok := d.mapping(f.val, f.path, " of names to strings")
	if !ok {
		return nil, false
	}
	out := make(map[string]string, len(m.order))
	for _, name := range m.order {
		v, vok := d.str(m.fields[name])
		ok = ok && vok
		out[name] = v
	}
	return out, ok
}

// name converts a RaptorML name to Osprey's rule ('-' becomes '_').
func (d *manifestDecoder) name(s string) string {
	if d.raptor {
		return strings.ReplaceAll(s, "-", "_")
	}
	return s
}

// checkName validates a namespace or name after conversion.
func (d *manifestDecoder) checkName(f manifestField, s string) bool {
	if err := ValidName(s); err != nil {
		msg := err.Error()
		if strings.Contains(s, "-") {
			msg += "; use '_' instead of '-'"
		}
		d.failf(f.val, f.path, "%s", msg)
		return false
	}
	return true
}

// ref parses a reference to a feature or data source, "namespace.name" or "name" (in ns),
// and returns its FQN.
func (d *manifestDecoder) ref(f manifestField, s, ns string) (string, bool) {
	s = d.name(strings.TrimSpace(s))
	refNS, name, qualified := strings.Cut(s, ".")
	if !qualified {
		refNS, name = ns, s
	}
	if strings.Contains(name, ".") {
		d.failf(f.val, f.path, "%q has more than one '.' (want namespace.name or name)", s)
		return "", false
	}
	if err := ValidName(refNS); err != nil {
		d.failf(f.val, f.path, "namespace of %q: %v", s, err)
		return "", false
	}
	if err := ValidName(name); err != nil {
		d.failf(f.val, f.path, "name of %q: %v", s, err)
		return "", false
	}
	return strings.ToLower(refNS) + "." + strings.ToLower(name), true
}

var (
	manifestTopFields        = []string{"apiVersion", "kind", "metadata", "spec"}
	raptorTopFields          = []string{"apiVersion", "kind", "metadata", "spec", "status"}
	manifestMetaFields       = []string{"name", "namespace", "labels"}
	raptorMetaFields         = []string{"name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "finalizers", "ownerReferences", "selfLink", "generateName", "deletionTimestamp", "deletionGracePeriodSeconds"}
	manifestFeatureFields    = []string{"primitive", "freshness", "staleness", "timeout", "keepPrevious", "keys", "dataSource", "builder", "middlewares", "dependencies"}
	manifestBuilderFields    = []string{"kind", "aggr", "aggrGranularity", "module", "config", "code"}
	raptorBuilderFields      = []string{"kind", "aggr", "aggrGranularity", "module", "config", "code", "runtime", "packages"}
	manifestMiddlewareFields = []string{"name", "module", "stages", "priority", "config"}
	manifestDataSourceFields = []string{"kind", "config", "keyFields", "timestampField", "schema"}
	raptorDataSourceFields   = []string{"kind", "config", "keyFields", "timestampField", "schema", "replicas", "resources"}
)

// pick returns the Osprey or the RaptorML field list.
func (d *manifestDecoder) pick(osprey, raptor []string) []string {
	if d.raptor {
		return raptor
	}
	return osprey
}

// document decodes one YAML document. ok is false for an empty document and for one with
// errors (in d.errs).
func (d *manifestDecoder) document(doc *yaml.Node) (m Manifest, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, abort := r.(manifestAbort); !abort {
				panic(r)
			}
			d.failf(nil, "", "too large: more than %d YAML nodes, counting each use of an alias", manifestNodeBudget)
			m, ok = Manifest{}, false
		}
	}()
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return m, false
	}
	root := d.resolve(doc.Content[0])
	d.rootLine = root.Line
	if yamlIsNull(root) {
		return m, false // an empty document
	}
	top, ok := d.mapping(root, "", " with apiVersion, kind, metadata and spec")
	if !ok {
		return m, false
	}
	m.Pos = d.pos
	m.Pos.Line = root.Line

	f, ok := top.get("apiVersion")
	if !ok {
		d.failf(root, "apiVersion", "missing (want %s)", APIVersion)
	} else if av, sok := d.str(f); sok {
		switch av {
		case APIVersion:
		case RaptorAPIVersion:
			d.raptor = true
		default:
			d.failf(f.val, f.path, "unsupported apiVersion %q (want %s, or %s for a RaptorML manifest)", av, APIVersion, RaptorAPIVersion)
		}
		m.APIVersion = av
	}
	f, ok = top.get("kind")
	if !ok {
		d.failf(root, "kind", "missing (want Feature or DataSource)")
	} else if kind, sok := d.str(f); sok {
		switch kind {
		case string(ManifestFeature), string(ManifestDataSource):
			m.Kind = ManifestKind(kind)
		case "Model":
			if d.raptor {
				d.failf(f.val, f.path, "Model is not supported yet: RaptorML Models cannot be migrated (migrate their Features and DataSources)")
			} else {
				d.failf(f.val, f.path, "Model is not supported yet (want Feature or DataSource)")
			}
		case "Plugin":
			d.failf(f.val, f.path, "Plugin is not supported yet (want Feature or DataSource)")
		default:
			msg := fmt.Sprintf("unknown kind %q (want Feature or DataSource)", kind)
			if s := manifestSuggest(kind, []string{"Feature", "DataSource"}); s != "" {
				msg = fmt.Sprintf("unknown kind %q (did you mean %s?)", kind, s)
			}
			d.failf(f.val, f.path, "%s", msg)
		}
	}
	if len(d.errs) > 0 {
		return m, false // without apiVersion and kind, the rest cannot be checked
	}
	d.allow(top, d.pick(manifestTopFields, raptorTopFields)...)

	// metadata. ns stays the default namespace when metadata.namespace is bad, so that bare
	// references in spec do not report the same problem again.
	fqn, ns := "", DefaultNamespace
	var labels map[string]string
	if f, ok := top.get("metadata"); !ok {
		d.failf(root, "metadata", "missing (want at least metadata.name)")
	} else if meta, ok := d.mapping(f.val, f.path, " with name, namespace and labels"); ok {
		d.allow(meta, d.pick(manifestMetaFields, raptorMetaFields)...)
		name, nameOK := "", false
		if f, ok := meta.get("name"); !ok {
			d.failf(nil, "metadata.name", "missing")
		} else if s, ok := d.str(f); ok {
			name = d.name(s)
			nameOK = d.checkName(f, name)
		}
		nsOK := true
		if f, ok := meta.get("namespace"); ok {
			nsOK = false
			if s, ok := d.str(f); ok {
				if s = d.name(s); d.checkName(f, s) {
					ns, nsOK = strings.ToLower(s), true
				}
			}
		}
		if nameOK && nsOK {
			fqn = ns + "." + strings.ToLower(name)
		}
		if f, ok := meta.get("labels"); ok {
			labels, _ = d.stringMap(f)
		}
	}

	var spec manifestMap
	specOK := false
	if f, ok := top.get("spec"); !ok {
		d.failf(root, "spec", "missing")
	} else {
		spec, specOK = d.mapping(f.val, f.path, "")
	}
	if !specOK {
		return m, false
	}
	switch m.Kind {
	case ManifestFeature:
		m.Feature = d.feature(spec, fqn, ns, labels)
	case ManifestDataSource:
		m.DataSource = d.dataSource(spec, fqn, labels)
	}
	if len(d.errs) > 0 || (m.Feature == nil && m.DataSource == nil) {
		return m, false
	}
	var err error
	if m.Feature != nil {
		err = m.Feature.Validate()
	} else {
		err = m.DataSource.Validate()
	}
	if err != nil {
		d.validationError(err)
		return m, false
	}
	return m, true
}

// validationError turns an error from Validate into a ManifestError at the field it names.
func (d *manifestDecoder) validationError(err error) {
	var fe *FieldError
	if errors.As(err, &fe) {
		d.failErr(nil, fe.Path, fe.Msg, err)
		return
	}
	d.failErr(nil, "", err.Error(), err)
}

const raptorCodeMessage = "RaptorML Python programs cannot run in Osprey; compile the handler to a Wasm module and set spec.builder.module (see docs/migrating-from-raptor.md)"

// feature decodes a Feature's spec. It returns nil when fqn is "" (metadata had errors).
func (d *manifestDecoder) feature(spec manifestMap, fqn, ns string, labels map[string]string) *Feature {
	d.allow(spec, manifestFeatureFields...)
	ft := &Feature{FQN: fqn, Timeout: DefaultTimeout, Labels: labels}

	if f, ok := spec.get("primitive"); !ok {
		d.failf(nil, "spec.primitive", "missing (want int, float, string, bool, timestamp or a list of one, e.g. []int)")
	} else if s, ok := d.str(f); ok {
		p, err := ParsePrimitive(strings.ToLower(strings.TrimSpace(s)))
		if err != nil {
			d.failf(f.val, f.path, "%v", err)
		}
		ft.Primitive = p
	}
	for _, dur := range []struct {
		name     string
		dst      *time.Duration
		required bool
	}{{"freshness", &ft.Freshness, true}, {"staleness", &ft.Staleness, true}, {"timeout", &ft.Timeout, false}} {
		if f, ok := spec.get(dur.name); ok {
			if v, ok := d.duration(f); ok {
				*dur.dst = v
			}
		} else if dur.required {
			d.failf(nil, "spec."+dur.name, "missing (a Go duration such as 1m or 24h)")
		}
	}
	if f, ok := spec.get("keepPrevious"); ok {
		if kp, ok := d.mapping(f.val, f.path, " with versions and over"); ok {
			d.allow(kp, "versions", "over")
			ft.KeepPrevious = &KeepPrevious{}
			if f, ok := kp.get("versions"); !ok {
				d.failf(nil, "spec.keepPrevious.versions", "missing (how many previous values to keep)")
			} else if v, ok := d.integer(f); ok {
				ft.KeepPrevious.Versions = v
			}
			if f, ok := kp.get("over"); !ok {
				d.failf(nil, "spec.keepPrevious.over", "missing (how long to keep previous values, e.g. 24h)")
			} else if v, ok := d.duration(f); ok {
				ft.KeepPrevious.Over = v
			}
		}
	}
	if f, ok := spec.get("keys"); !ok {
		d.failf(nil, "spec.keys", "missing (the entity keys, e.g. [user_id])")
	} else if keys, _, ok := d.strs(f); ok {
		ft.Keys = keys
	}
	if f, ok := spec.get("dataSource"); ok {
		ft.DataSource = d.dataSourceRef(f, ns)
	}
	if f, ok := spec.get("builder"); ok {
		d.builder(f, ft)
	} else {
		ft.Builder.Kind = BuilderSourceless
	}
	if f, ok := spec.get("middlewares"); ok {
		d.middlewares(f, ft)
	}
	if f, ok := spec.get("dependencies"); ok {
		if deps, elems, ok := d.strs(f); ok {
			for i, dep := range deps {
				fqnDep, ok := d.ref(elems[i], dep, ns)
				if !ok {
					continue
				}
				if j := slices.Index(ft.Dependencies, fqnDep); j >= 0 {
					d.failf(elems[i].val, elems[i].path, "duplicate dependency %s", fqnDep)
					continue
				}
				ft.Dependencies = append(ft.Dependencies, fqnDep)
			}
		}
	}
	if fqn == "" {
		return nil
	}
	return ft
}

// dataSourceRef decodes spec.dataSource: "namespace.name", "name", or {name, namespace}.
func (d *manifestDecoder) dataSourceRef(f manifestField, ns string) string {
	if f.val.Kind == yaml.MappingNode {
		m, _ := d.mapping(f.val, f.path, "")
		d.allow(m, "name", "namespace")
		refNS := ns
		if nf, ok := m.get("namespace"); ok {
			s, ok := d.str(nf)
			if !ok {
				return ""
			}
			refNS = d.name(strings.TrimSpace(s))
			if !d.checkName(nf, refNS) {
				return ""
			}
		}
		nf, ok := m.get("name")
		if !ok {
			d.failf(nil, f.path+".name", "missing")
			return ""
		}
		s, ok := d.str(nf)
		if !ok {
			return ""
		}
		name := d.name(strings.TrimSpace(s))
		if !d.checkName(nf, name) {
			return ""
		}
		return strings.ToLower(refNS) + "." + strings.ToLower(name)
	}
	s, ok := d.str(f)
	if !ok {
		return ""
	}
	fqn, _ := d.ref(f, s, ns)
	return fqn
}

func (d *manifestDecoder) builder(f manifestField, ft *Feature) {
	b, ok := d.mapping(f.val, f.path, " with kind, module, aggr, aggrGranularity and config")
	if !ok {
		return
	}
	d.allow(b, d.pick(manifestBuilderFields, raptorBuilderFields)...)
	// runtime and packages (RaptorML) describe the Python environment: harmless without code.
	if f, ok := b.get("code"); ok {
		if f.val.Kind != yaml.ScalarNode || strings.TrimSpace(f.val.Value) != "" {
			d.failf(f.key, f.path, "%s", raptorCodeMessage)
		}
	}
	kindField, hasKind := b.get("kind")
	if hasKind {
		if s, ok := d.str(kindField); ok {
			s = strings.TrimSpace(s)
			switch {
			case s == "":
				d.failf(kindField.val, kindField.path, "empty (omit it for %s, or with spec.builder.module for %s)", BuilderSourceless, manifestBuilderWasm)
			case d.raptor && s == "model":
				d.failf(kindField.val, kindField.path, "builder kind model is not supported yet (RaptorML Models cannot be migrated)")
			case s == "headless": // RaptorML's former name of sourceless
				ft.Builder.Kind = BuilderSourceless
			default:
				ft.Builder.Kind = s
			}
		}
	}
	if f, ok := b.get("module"); ok {
		if s, ok := d.str(f); ok {
			ft.Builder.Module = strings.TrimSpace(s)
			if ft.Builder.Module == "" {
				d.failf(f.val, f.path, "empty (a Wasm module's path or digest)")
			}
		}
	}
	switch {
	case !hasKind && ft.Builder.Module != "":
		ft.Builder.Kind = manifestBuilderWasm
	case !hasKind:
		ft.Builder.Kind = BuilderSourceless
	case ft.Builder.Kind == BuilderSourceless && ft.Builder.Module != "":
		d.failf(nil, "spec.builder.module", "set with builder kind %s, which runs no program (remove spec.builder.module, or set spec.builder.kind: %s)", BuilderSourceless, manifestBuilderWasm)
	case ft.Builder.Kind == manifestBuilderWasm && ft.Builder.Module == "":
		d.failf(kindField.val, "spec.builder.module", "missing: builder kind %s needs the module to run", manifestBuilderWasm)
	}
	if f, ok := b.get("aggr"); ok {
		if names, elems, ok := d.strs(f); ok {
			first := map[AggrFn]int{}
			for i, s := range names {
				a, err := ParseAggrFn(strings.ToLower(strings.TrimSpace(s)))
				if err != nil {
					d.failf(elems[i].val, elems[i].path, "%v", err)
					continue
				}
				if j, dup := first[a]; dup {
					d.failf(elems[i].val, elems[i].path, "duplicate aggregation %s (also spec.builder.aggr[%d]; mean is an alias of avg)", a, j)
					continue
				}
				first[a] = i
				ft.Aggrs = ft.Aggrs.With(a)
			}
		}
	}
	if f, ok := b.get("aggrGranularity"); ok {
		if v, ok := d.duration(f); ok {
			ft.Granularity = v
		}
	}
	if f, ok := b.get("config"); ok {
		ft.Builder.Config, _ = d.stringMap(f)
	}
}

func (d *manifestDecoder) middlewares(f manifestField, ft *Feature) {
	elems, ok := d.list(f)
	if !ok {
		return
	}
	for _, e := range elems {
		m, ok := d.mapping(e.val, e.path, " with name, module, stages, priority and config")
		if !ok {
			continue
		}
		d.allow(m, manifestMiddlewareFields...)
		var ref MiddlewareRef
		if f, ok := m.get("name"); ok {
			if s, ok := d.str(f); ok {
				ref.Name = strings.TrimSpace(s)
			}
		}
		if f, ok := m.get("module"); ok {
			if s, ok := d.str(f); ok {
				ref.Module = strings.TrimSpace(s)
			}
		}
		if f, ok := m.get("stages"); ok {
			if stages, elems, ok := d.strs(f); ok {
				for i, s := range stages {
					st, err := ParseStage(strings.TrimSpace(s))
					if err != nil {
						d.failf(elems[i].val, elems[i].path, "%v", err)
						continue
					}
					if slices.Contains(ref.Stages, st) {
						d.failf(elems[i].val, elems[i].path, "duplicate stage %s", st)
						continue
					}
					ref.Stages = append(ref.Stages, st)
				}
			}
		}
		if f, ok := m.get("priority"); ok {
			ref.Priority, _ = d.integer(f)
		}
		if f, ok := m.get("config"); ok {
			ref.Config, _ = d.stringMap(f)
		}
		ft.Middlewares = append(ft.Middlewares, ref)
	}
}

// dataSource decodes a DataSource's spec. It returns nil when fqn is "" (metadata had
// errors).
func (d *manifestDecoder) dataSource(spec manifestMap, fqn string, labels map[string]string) *DataSource {
	d.allow(spec, d.pick(manifestDataSourceFields, raptorDataSourceFields)...)
	ds := &DataSource{FQN: fqn, Labels: labels}
	if f, ok := spec.get("kind"); !ok {
		d.failf(nil, "spec.kind", "missing (the kind of source, e.g. streaming or rest)")
	} else if s, ok := d.str(f); ok {
		ds.Kind = strings.TrimSpace(s)
	}
	if f, ok := spec.get("config"); ok {
		if f.val.Kind == yaml.SequenceNode {
			ds.Config = d.raptorConfig(f)
		} else {
			ds.Config, _ = d.stringMap(f)
		}
	}
	if f, ok := spec.get("keyFields"); ok {
		ds.KeyFields, _, _ = d.strs(f)
	}
	if f, ok := spec.get("timestampField"); ok {
		if s, ok := d.str(f); ok {
			ds.TimestampField = strings.TrimSpace(s)
		}
	}
	if f, ok := spec.get("schema"); ok {
		switch f.val.Kind {
		case yaml.ScalarNode:
			ds.Schema = f.val.Value
		case yaml.MappingNode:
			var v any
			if err := f.val.Decode(&v); err != nil {
				d.failf(f.val, f.path, "invalid inline schema: %s", strings.TrimPrefix(err.Error(), "yaml: "))
				break
			}
			js, err := json.Marshal(v)
			if err != nil {
				d.failf(f.val, f.path, "an inline schema must be representable as JSON: %v", err)
				break
			}
			ds.Schema = string(js)
		default:
			d.failf(f.val, f.path, "must be a string or a mapping, not %s", describeYAMLNode(f.val))
		}
	}
	if fqn == "" {
		return nil
	}
	return ds
}

// raptorConfig decodes RaptorML's config list of {name, value} (or {name, secretKeyRef}).
func (d *manifestDecoder) raptorConfig(f manifestField) map[string]string {
	elems, ok := d.list(f)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(elems))
	first := map[string]int{}
	for i, e := range elems {
		m, ok := d.mapping(e.val, e.path, " with name and value")
		if !ok {
			continue
		}
		d.allow(m, "name", "value", "secretKeyRef")
		if sf, ok := m.get("secretKeyRef"); ok {
			d.failf(sf.key, sf.path, "Kubernetes secret references are not supported: Osprey does not read Kubernetes secrets (set value, or let the data source plugin read the secret from its own environment)")
			continue
		}
		nf, ok := m.get("name")
		if !ok {
			d.failf(nil, e.path+".name", "missing")
			continue
		}
		name, ok := d.str(nf)
		if !ok {
			continue
		}
		if j, dup := first[name]; dup {
			d.failf(nf.val, nf.path, "duplicate config entry %q (also %s)", name, manifestIndex(f.path, j))
			continue
		}
		first[name] = i
		vf, ok := m.fields["value"]
		if !ok {
			d.failf(nil, e.path+".value", "missing")
			continue
		}
		if yamlIsNull(vf.val) {
			out[name] = ""
			continue
		}
		if v, ok := d.str(vf); ok {
			out[name] = v
		}
	}
	return out
}
