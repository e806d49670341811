package manifest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/osprey-ml/osprey/engine"
)

// nodeBudget bounds the YAML nodes visited in one document, counting each alias expansion,
// so that an alias bomb cannot make a small input expensive.
const nodeBudget = 100_000

// builderWasm is the builder kind a manifest gets when it names a module but no kind.
const builderWasm = "wasm"

// parse parses data without the duplicate check, which Load runs across
// files.
func parse(data []byte, source string) ([]Manifest, []error) {
	if len(data) > MaxSize {
		return nil, []error{&Error{Pos: Position{Source: source},
			Msg: fmt.Sprintf("larger than %d bytes", MaxSize)}}
	}
	var ms []Manifest
	var errs []error
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 1; ; doc++ {
		var node yaml.Node
		if err := decodeDocument(dec, &node); err != nil {
			if err == io.EOF {
				break
			}
			errs = append(errs, yamlSyntaxError(source, doc, err))
			break // the decoder cannot resynchronise after a syntax error
		}
		d := decoder{pos: Position{Source: source, Document: doc}, lines: map[string]int{}}
		m, ok := d.document(&node)
		errs = append(errs, d.sortedErrors()...)
		if ok {
			ms = append(ms, m)
		}
	}
	return ms, errs
}

// decodeDocument decodes the next document, turning a panic inside the YAML library into an
// error: a hostile manifest must not take the process down.
func decodeDocument(dec *yaml.Decoder, node *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal error: %v", r)
		}
	}()
	return dec.Decode(node)
}

// yamlSyntaxError turns the YAML library's "yaml: line 3: msg" into an *Error.
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
	return &Error{Pos: Position{Source: source, Document: doc, Line: line}, Msg: "invalid YAML: " + msg, Err: err}
}

// tooLarge is panicked with when a document exceeds nodeBudget, and recovered
// by decoder.document.
type tooLarge struct{}

// decoder decodes one YAML document. It collects every error it finds, and records
// the line of every field it visits (the line of its key; for a list element, of the element)
// so that errors found later, by Validate, and missing fields can be located.
type decoder struct {
	pos      Position
	raptor   bool
	rootLine int
	errs     []*Error
	lines    map[string]int
	budget   int
}

func (d *decoder) failf(n *yaml.Node, path, format string, args ...any) {
	d.failErr(n, path, fmt.Sprintf(format, args...), nil)
}

func (d *decoder) failErr(n *yaml.Node, path, msg string, cause error) {
	pos := d.pos
	if n != nil && n.Line > 0 {
		pos.Line = n.Line
	} else {
		pos.Line = d.lineOf(path)
	}
	d.errs = append(d.errs, &Error{Pos: pos, Path: path, Msg: msg, Err: cause})
}

// sortedErrors returns the document's errors in line order.
func (d *decoder) sortedErrors() []error {
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return cmp.Compare(a.Pos.Line, b.Pos.Line) })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errs
}

// lineOf returns the line of the field at path, or of its nearest ancestor that was seen.
func (d *decoder) lineOf(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		if path == "" {
			return d.rootLine
		}
		path = parentPath(path)
	}
}

// parentPath returns the path of the field holding path: spec for spec.keys,
// spec.keys for spec.keys[1].
func parentPath(path string) string {
	i := strings.LastIndexByte(path, '.')
	if strings.HasSuffix(path, "]") {
		i = strings.LastIndexByte(path, '[')
	}
	if i < 0 {
		return ""
	}
	return path[:i]
}

// joinPath returns the path of field key inside path.
func joinPath(path, key string) string {
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

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// resolve follows aliases and charges the node to the document's budget.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for {
		d.budget++
		if d.budget > nodeBudget {
			panic(tooLarge{})
		}
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// field is one key: value pair of a mapping.
type field struct {
	key, val *yaml.Node
	path     string
}

// fieldMap is a decoded mapping: its fields by name, in document order.
type fieldMap struct {
	node   *yaml.Node
	path   string
	fields map[string]field
	order  []string
	known  []string // set by allow
}

// get returns the field name unless it is absent or null. Once allow has named the known
// fields, name must be one of them: the reader reads no field the schema lacks.
func (m fieldMap) get(name string) (field, bool) {
	if m.known != nil && !slices.Contains(m.known, name) {
		panic(fmt.Sprintf("manifest: reading %s, which is not in the schema (schema.go)", joinPath(m.path, name)))
	}
	f, ok := m.fields[name]
	if !ok || isNull(f.val) {
		return field{}, false
	}
	return f, true
}

// mapping decodes n as a mapping, resolving merge keys (<<) and reporting duplicate and
// non-string keys. what describes the expected content for the error when n is no mapping.
func (d *decoder) mapping(n *yaml.Node, path, what string) (fieldMap, bool) {
	n = d.resolve(n)
	m := fieldMap{node: n, path: path, fields: map[string]field{}}
	if n.Kind != yaml.MappingNode {
		d.failf(n, path, "must be a mapping%s, not %s", what, describe(n))
		return m, false
	}
	d.collect(&m, n, true, 0)
	return m, true
}

func (d *decoder) collect(m *fieldMap, n *yaml.Node, explicit bool, depth int) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.failf(k, m.path, "field names must be strings, not %s", describe(k))
			continue
		}
		name := k.Value
		path := joinPath(m.path, name)
		if prev, dup := m.fields[name]; dup {
			if explicit {
				d.failf(k, path, "duplicate field (first at line %d)", prev.key.Line)
			}
			continue
		}
		rv := d.resolve(v)
		m.fields[name] = field{key: k, val: rv, path: path}
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
		if len(srcs) == 0 && !isNull(v) {
			d.failf(v, m.path, "a merge (<<) must name a mapping or a list of mappings, not %s", describe(v))
		}
		for _, s := range srcs {
			s = d.resolve(s)
			if s.Kind != yaml.MappingNode {
				d.failf(s, m.path, "a merge (<<) must name a mapping or a list of mappings, not %s", describe(s))
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

// allow reports the fields of m that are not in fs (for the manifest's apiVersion), and
// restricts m.get to them.
func (d *decoder) allow(m *fieldMap, fs fieldSet) {
	known := fs.osprey
	if d.raptor {
		known = fs.raptor
	}
	m.known = known
	for _, name := range m.order {
		if slices.Contains(known, name) {
			continue
		}
		f := m.fields[name]
		msg := "unknown field"
		if s := suggest(name, known); s != "" {
			msg += " (did you mean " + s + "?)"
		}
		d.failf(f.key, f.path, "%s", msg)
	}
}

// suggest returns the known name closest to name, or "" if none is close.
func suggest(name string, known []string) string {
	if len(name) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k
		}
		if dist := editDistance(strings.ToLower(name), strings.ToLower(k)); dist < bestDist && dist < len(k)/2+1 {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, counted in bytes.
func editDistance(a, b string) int {
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

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
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
func (d *decoder) str(f field) (string, bool) {
	if f.val.Kind != yaml.ScalarNode || isNull(f.val) {
		d.failf(f.val, f.path, "must be a string, not %s", describe(f.val))
		return "", false
	}
	return f.val.Value, true
}

func (d *decoder) duration(f field) (time.Duration, bool) {
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

func (d *decoder) integer(f field) (int, bool) {
	v, ok := d.integerBits(f, 32)
	return int(v), ok
}

func (d *decoder) integer64(f field) (int64, bool) { return d.integerBits(f, 64) }

// integerBits decodes an integer that fits in bits bits, signed.
func (d *decoder) integerBits(f field, bits int) (int64, bool) {
	if f.val.Kind == yaml.ScalarNode && (f.val.Tag == "!!int" || f.val.Tag == "!!str") {
		v, err := strconv.ParseInt(strings.ReplaceAll(f.val.Value, "_", ""), 0, bits)
		if err == nil {
			return v, true
		}
		if errors.Is(err, strconv.ErrRange) {
			d.failf(f.val, f.path, "%s is out of range", f.val.Value)
			return 0, false
		}
	}
	d.failf(f.val, f.path, "must be an integer, not %s", describe(f.val))
	return 0, false
}

// list decodes a sequence, returning its elements (aliases resolved) and their paths.
func (d *decoder) list(f field) ([]field, bool) {
	if f.val.Kind != yaml.SequenceNode {
		d.failf(f.val, f.path, "must be a list, not %s", describe(f.val))
		return nil, false
	}
	out := make([]field, len(f.val.Content))
	for i, e := range f.val.Content {
		e = d.resolve(e)
		path := indexPath(f.path, i)
		d.lines[path] = e.Line
		out[i] = field{key: e, val: e, path: path}
	}
	return out, true
}

// strs decodes a list of strings. An empty list is nil, as the writer leaves it out.
func (d *decoder) strs(f field) ([]string, []field, bool) {
	elems, ok := d.list(f)
	if !ok || len(elems) == 0 {
		return nil, nil, ok
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		s, eok := d.str(e)
		ok = ok && eok
		out = append(out, s)
	}
	return out, elems, ok
}

// stringMap decodes a mapping of strings to strings. An empty mapping is nil, as the writer
// leaves it out.
func (d *decoder) stringMap(f field) (map[string]string, bool) {
	m, ok := d.mapping(f.val, f.path, " of names to strings")
	if !ok || len(m.order) == 0 {
		return nil, ok
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
func (d *decoder) name(s string) string {
	if d.raptor {
		return strings.ReplaceAll(s, "-", "_")
	}
	return s
}

// checkName validates a namespace or name after conversion.
func (d *decoder) checkName(f field, s string) bool {
	if err := engine.ValidName(s); err != nil {
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
func (d *decoder) ref(f field, s, ns string) (string, bool) {
	s = d.name(strings.TrimSpace(s))
	refNS, name, qualified := strings.Cut(s, ".")
	if !qualified {
		refNS, name = ns, s
	}
	if strings.Contains(name, ".") {
		d.failf(f.val, f.path, "%q has more than one '.' (want namespace.name or name)", s)
		return "", false
	}
	if err := engine.ValidName(refNS); err != nil {
		d.failf(f.val, f.path, "namespace of %q: %v", s, err)
		return "", false
	}
	if err := engine.ValidName(name); err != nil {
		d.failf(f.val, f.path, "name of %q: %v", s, err)
		return "", false
	}
	return strings.ToLower(refNS) + "." + strings.ToLower(name), true
}

// document decodes one YAML document. ok is false for an empty document and for one with
// errors (in d.errs).
func (d *decoder) document(doc *yaml.Node) (m Manifest, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, abort := r.(tooLarge); !abort {
				panic(r)
			}
			d.failf(nil, "", "too large: more than %d YAML nodes, counting each use of an alias", nodeBudget)
			m, ok = Manifest{}, false
		}
	}()
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return m, false
	}
	root := d.resolve(doc.Content[0])
	d.rootLine = root.Line
	if isNull(root) {
		return m, false // an empty document
	}
	top, ok := d.mapping(root, "", topFields.with())
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
	// The kinds of the manifest's apiVersion: RaptorML has no Plugin nor Egress.
	kinds, wantKinds := []string{string(KindFeature), string(KindDataSource), string(KindPlugin), string(KindEgress)}, "Feature, DataSource, Plugin or Egress"
	if d.raptor {
		kinds, wantKinds = kinds[:2], "Feature or DataSource"
	}
	f, ok = top.get("kind")
	if !ok {
		d.failf(root, "kind", "missing (want %s)", wantKinds)
	} else if kind, sok := d.str(f); sok {
		switch kind {
		case string(KindFeature), string(KindDataSource):
			m.Kind = Kind(kind)
		case string(KindPlugin), string(KindEgress):
			if d.raptor {
				d.failf(f.val, f.path, "RaptorML has no %s kind: a%s %s manifest is an Osprey one (apiVersion: %s)", kind, article(kind), kind, APIVersion)
			} else {
				m.Kind = Kind(kind)
			}
		case "Model":
			if d.raptor {
				d.failf(f.val, f.path, "Model is not supported yet: RaptorML Models cannot be migrated (migrate their Features and DataSources)")
			} else {
				d.failf(f.val, f.path, "Model is not supported yet (want %s)", wantKinds)
			}
		default:
			msg := fmt.Sprintf("unknown kind %q (want %s)", kind, wantKinds)
			if s := suggest(kind, kinds); s != "" {
				msg = fmt.Sprintf("unknown kind %q (did you mean %s?)", kind, s)
			}
			d.failf(f.val, f.path, "%s", msg)
		}
	}
	if len(d.errs) > 0 {
		return m, false // without apiVersion and kind, the rest cannot be checked
	}
	d.allow(&top, topFields)

	// metadata. ns stays the default namespace when metadata.namespace is bad, so that bare
	// references in spec do not report the same problem again.
	fqn, ns := "", engine.DefaultNamespace
	var labels map[string]string
	if f, ok := top.get("metadata"); !ok {
		d.failf(root, "metadata", "missing (want at least metadata.name)")
	} else if meta, ok := d.mapping(f.val, f.path, metadataFields.with()); ok {
		d.allow(&meta, metadataFields)
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

	var spec fieldMap
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
	case KindFeature:
		m.Feature = d.feature(spec, fqn, ns, labels)
	case KindDataSource:
		m.DataSource = d.dataSource(spec, fqn, labels)
	case KindPlugin:
		m.Plugin = d.plugin(spec, fqn, labels)
	case KindEgress:
		m.Egress = d.egress(spec, fqn, labels)
	}
	if len(d.errs) > 0 || (m.Feature == nil && m.DataSource == nil && m.Plugin == nil && m.Egress == nil) {
		return m, false
	}
	var err error
	switch {
	case m.Feature != nil:
		err = m.Feature.Validate()
	case m.DataSource != nil:
		err = m.DataSource.Validate()
	case m.Plugin != nil:
		err = m.Plugin.Validate()
	default:
		err = m.Egress.Validate()
	}
	if err != nil {
		d.validationError(err)
		return m, false
	}
	return m, true
}

// validationError turns an error from Validate into an *Error at the field it names.
func (d *decoder) validationError(err error) {
	var fe *engine.FieldError
	if errors.As(err, &fe) {
		d.failErr(nil, fe.Path, fe.Msg, err)
		return
	}
	d.failErr(nil, "", err.Error(), err)
}

const raptorCodeMessage = "RaptorML Python programs cannot run in Osprey; compile the handler to a Wasm module and set spec.builder.module (see docs/migrating-from-raptor.md)"

// feature decodes a Feature's spec. It returns nil when fqn is "" (metadata had errors).
func (d *decoder) feature(spec fieldMap, fqn, ns string, labels map[string]string) *engine.Feature {
	d.allow(&spec, featureFields)
	ft := &engine.Feature{FQN: fqn, Timeout: engine.DefaultTimeout, Labels: labels}

	if f, ok := spec.get("primitive"); !ok {
		d.failf(nil, "spec.primitive", "missing (want int, float, string, bool, timestamp or a list of one, e.g. []int)")
	} else if s, ok := d.str(f); ok {
		p, err := engine.ParsePrimitive(strings.ToLower(strings.TrimSpace(s)))
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
		if kp, ok := d.mapping(f.val, f.path, keepPreviousFields.with()); ok {
			d.allow(&kp, keepPreviousFields)
			ft.KeepPrevious = &engine.KeepPrevious{}
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
		d.builder(f, ft, ns)
	} else {
		ft.Builder.Kind = engine.BuilderSourceless
	}
	if f, ok := spec.get("middlewares"); ok {
		d.middlewares(f, ft, ns)
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
func (d *decoder) dataSourceRef(f field, ns string) string {
	if f.val.Kind == yaml.MappingNode {
		m, _ := d.mapping(f.val, f.path, "")
		d.allow(&m, dataSourceRefFields)
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

func (d *decoder) builder(f field, ft *engine.Feature, ns string) {
	b, ok := d.mapping(f.val, f.path, builderFields.with())
	if !ok {
		return
	}
	d.allow(&b, builderFields)
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
				d.failf(kindField.val, kindField.path, "empty (omit it for %s, or with spec.builder.module for %s)", engine.BuilderSourceless, builderWasm)
			case d.raptor && s == "model":
				d.failf(kindField.val, kindField.path, "builder kind model is not supported yet (RaptorML Models cannot be migrated)")
			case s == "headless": // RaptorML's former name of sourceless
				ft.Builder.Kind = engine.BuilderSourceless
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
	pluginField, hasPlugin := b.get("plugin")
	if hasPlugin {
		if s, ok := d.str(pluginField); ok {
			ft.Builder.Plugin, _ = d.ref(pluginField, s, ns)
		}
	}
	functionField, hasFunction := b.get("function")
	if hasFunction {
		if s, ok := d.str(functionField); ok {
			ft.Builder.Function = strings.TrimSpace(s)
			if msg := checkFunctionName(ft.Builder.Function); msg != "" {
				d.failf(functionField.val, functionField.path, "%s", msg)
			}
		}
	}
	switch {
	case hasPlugin && ft.Builder.Module != "":
		d.failf(pluginField.key, pluginField.path, "set with spec.builder.module: a feature is computed by a Wasm program or by a plugin's connector, not both")
	case hasFunction && !hasPlugin:
		d.failf(functionField.key, functionField.path, "set without spec.builder.plugin (the plugin whose connector function it is)")
	case hasPlugin && !hasFunction:
		d.failf(pluginField.key, "spec.builder.function", "missing: the plugin's connector function (a function of role connector)")
	case hasPlugin && hasKind && ft.Builder.Kind != engine.BuilderPlugin:
		d.failf(kindField.val, kindField.path, "%q with spec.builder.plugin (a plugin's connector is builder kind %s; omit the kind)", ft.Builder.Kind, engine.BuilderPlugin)
	case hasPlugin:
		ft.Builder.Kind = engine.BuilderPlugin
	case hasKind && ft.Builder.Kind == engine.BuilderPlugin:
		d.failf(kindField.val, "spec.builder.plugin", "missing: builder kind %s needs the plugin and its connector function", engine.BuilderPlugin)
	case !hasKind && ft.Builder.Module != "":
		ft.Builder.Kind = builderWasm
	case !hasKind:
		ft.Builder.Kind = engine.BuilderSourceless
	case ft.Builder.Kind == engine.BuilderSourceless && ft.Builder.Module != "":
		d.failf(nil, "spec.builder.module", "set with builder kind %s, which runs no program (remove spec.builder.module, or set spec.builder.kind: %s)", engine.BuilderSourceless, builderWasm)
	case ft.Builder.Kind == builderWasm && ft.Builder.Module == "":
		d.failf(kindField.val, "spec.builder.module", "missing: builder kind %s needs the module to run", builderWasm)
	}
	if f, ok := b.get("aggr"); ok {
		if names, elems, ok := d.strs(f); ok {
			first := map[engine.AggrFn]int{}
			for i, s := range names {
				a, err := engine.ParseAggrFn(strings.ToLower(strings.TrimSpace(s)))
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
	if f, ok := b.get("storage"); ok {
		d.storage(f, ft)
	}
	if f, ok := b.get("messages"); ok {
		if s, ok := d.str(f); ok {
			p, err := engine.ParsePrimitive(strings.ToLower(strings.TrimSpace(s)))
			if err != nil {
				d.failf(f.val, f.path, "%v", err)
			}
			ft.Messages = p
		}
	}
}

// storage decodes spec.builder.storage: [{name, type, expireAfterWrite | expireAfterCall}].
// What is wrong beyond the shape (duplicates, both expiries) the feature's Validate reports.
func (d *decoder) storage(f field, ft *engine.Feature) {
	elems, ok := d.list(f)
	if !ok {
		return
	}
	for _, e := range elems {
		var st engine.StorageSpec
		if m, ok := d.mapping(e.val, e.path, storageFields.with()); ok {
			d.allow(&m, storageFields)
			if f, ok := m.get("name"); !ok {
				d.failf(e.val, e.path+".name", "missing (the storage value's name, e.g. last_seen)")
			} else if s, ok := d.str(f); ok {
				st.Name = strings.TrimSpace(s)
			}
			if f, ok := m.get("type"); !ok {
				d.failf(e.val, e.path+".type", "missing (int, float, string, bool, timestamp or a list of one)")
			} else if s, ok := d.str(f); ok {
				p, err := engine.ParsePrimitive(strings.ToLower(strings.TrimSpace(s)))
				if err != nil {
					d.failf(f.val, f.path, "%v", err)
				}
				st.Primitive = p
			}
			for _, dur := range []struct {
				name string
				dst  *time.Duration
			}{{"expireAfterWrite", &st.ExpireAfterWrite}, {"expireAfterCall", &st.ExpireAfterCall}} {
				if f, ok := m.get(dur.name); ok {
					if v, ok := d.duration(f); ok {
						if v <= 0 {
							d.failf(f.val, f.path, "must be a positive duration, e.g. 30m")
						}
						*dur.dst = v
					}
				}
			}
		}
		ft.Storage = append(ft.Storage, st) // even when bad: Validate's paths are indexes
	}
}

func (d *decoder) middlewares(f field, ft *engine.Feature, ns string) {
	elems, ok := d.list(f)
	if !ok {
		return
	}
	for _, e := range elems {
		m, ok := d.mapping(e.val, e.path, middlewareFields.with())
		if !ok {
			continue
		}
		d.allow(&m, middlewareFields)
		var ref engine.MiddlewareRef
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
		d.pluginMiddleware(m, e.path, &ref, ns)
		if f, ok := m.get("stages"); ok {
			if stages, elems, ok := d.strs(f); ok {
				for i, s := range stages {
					st, err := engine.ParseStage(strings.TrimSpace(s))
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

// pluginMiddleware decodes a middleware's plugin and function: a plugin's middleware names
// the plugin (relative to the manifest's namespace) and its function, and no name or module.
func (d *decoder) pluginMiddleware(m fieldMap, path string, ref *engine.MiddlewareRef, ns string) {
	pf, hasPlugin := m.get("plugin")
	if hasPlugin {
		if s, ok := d.str(pf); ok {
			ref.Plugin, _ = d.ref(pf, s, ns)
		}
	}
	ff, hasFunction := m.get("function")
	if hasFunction {
		if s, ok := d.str(ff); ok {
			ref.Function = strings.TrimSpace(s)
			if msg := checkFunctionName(ref.Function); msg != "" {
				d.failf(ff.val, ff.path, "%s", msg)
			}
		}
	}
	switch {
	case hasPlugin && (ref.Name != "" || ref.Module != ""):
		d.failf(pf.key, pf.path, "set with %s.name or %s.module: a middleware is a plugin's function, or a named native or Wasm one", path, path)
	case hasPlugin && !hasFunction:
		d.failf(pf.key, path+".function", "missing: the plugin's middleware function (a function of role middleware)")
	case hasFunction && !hasPlugin:
		d.failf(ff.key, ff.path, "set without %s.plugin (the plugin whose function it is)", path)
	}
}

// dataSource decodes a DataSource's spec. It returns nil when fqn is "" (metadata had
// errors).
func (d *decoder) dataSource(spec fieldMap, fqn string, labels map[string]string) *engine.DataSource {
	d.allow(&spec, dataSourceFields)
	ds := &engine.DataSource{FQN: fqn, Labels: labels}
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
			d.failf(f.val, f.path, "must be a string or a mapping, not %s", describe(f.val))
		}
	}
	if fqn == "" {
		return nil
	}
	return ds
}

// raptorConfig decodes RaptorML's config list of {name, value} (or {name, secretKeyRef}).
func (d *decoder) raptorConfig(f field) map[string]string {
	elems, ok := d.list(f)
	if !ok || len(elems) == 0 {
		return nil
	}
	out := make(map[string]string, len(elems))
	first := map[string]int{}
	for i, e := range elems {
		m, ok := d.mapping(e.val, e.path, raptorConfigFields.with())
		if !ok {
			continue
		}
		d.allow(&m, raptorConfigFields)
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
			d.failf(nf.val, nf.path, "duplicate config entry %q (also %s)", name, indexPath(f.path, j))
			continue
		}
		first[name] = i
		vf, ok := m.fields["value"]
		if !ok {
			d.failf(nil, e.path+".value", "missing")
			continue
		}
		if isNull(vf.val) {
			out[name] = ""
			continue
		}
		if v, ok := d.str(vf); ok {
			out[name] = v
		}
	}
	return out
}

// plugin decodes a Plugin's spec. It returns nil when fqn is "" (metadata had errors).
// What the wire types can hold is checked here; the rest is Plugin.Validate's.
func (d *decoder) plugin(spec fieldMap, fqn string, labels map[string]string) *Plugin {
	d.allow(&spec, pluginFields)
	p := &Plugin{FQN: fqn, Labels: labels}
	if f, ok := spec.get("module"); !ok {
		d.failf(nil, "spec.module", "missing (the Wasm module: its path, relative to the manifest, or its sha256: reference)")
	} else if s, ok := d.str(f); ok {
		p.Module = strings.TrimSpace(s)
		if p.Module == "" {
			d.failf(f.val, f.path, "empty (a Wasm module's path or digest)")
		}
	}
	if f, ok := spec.get("functions"); !ok {
		d.failf(nil, "spec.functions", "missing (the functions the module exports, e.g. [{name: handle, role: middleware}])")
	} else if elems, ok := d.list(f); ok {
		for _, e := range elems {
			var fn PluginFunction
			if m, ok := d.mapping(e.val, e.path, pluginFunctionFields.with()); ok {
				d.allow(&m, pluginFunctionFields)
				if f, ok := m.get("name"); ok {
					if s, ok := d.str(f); ok {
						fn.Name = strings.TrimSpace(s)
					}
				}
				if f, ok := m.get("role"); ok {
					if s, ok := d.str(f); ok {
						fn.Role = PluginRole(strings.TrimSpace(s))
						if r := strings.ToLower(string(fn.Role)); slices.Contains(pluginRoles, r) {
							fn.Role = PluginRole(r) // roles are case-insensitive; an unknown one is reported as written
						}
					}
				}
			}
			p.Functions = append(p.Functions, fn) // even when bad: Validate's paths are indexes
		}
	}
	if f, ok := spec.get("config"); ok {
		p.Config, _ = d.stringMap(f)
	}
	if f, ok := spec.get("allowedHosts"); ok {
		if hosts, _, ok := d.strs(f); ok {
			for _, h := range hosts {
				p.AllowedHosts = append(p.AllowedHosts, strings.TrimSpace(h))
			}
		}
	}
	if f, ok := spec.get("limits"); ok {
		d.pluginLimits(f, &p.Limits)
	}
	if fqn == "" {
		return nil
	}
	return p
}

// pluginLimits decodes spec.limits. A timeout that is written must be positive: 0 would
// read as the host's default, not as what it says.
func (d *decoder) pluginLimits(f field, l *PluginLimits) {
	m, ok := d.mapping(f.val, f.path, pluginLimitsFields.with())
	if !ok {
		return
	}
	d.allow(&m, pluginLimitsFields)
	if f, ok := m.get("timeout"); ok {
		if v, ok := d.duration(f); ok {
			if v <= 0 {
				d.failf(f.val, f.path, "%s", timeoutMsg)
			}
			l.Timeout = v
		}
	}
	if f, ok := m.get("memoryPages"); ok {
		if v, ok := d.integer64(f); ok {
			if v < 0 || v > maxMemoryPages {
				d.failf(f.val, f.path, "%s", memoryPagesMsg(v))
			} else {
				l.MemoryPages = uint32(v)
			}
		}
	}
	for _, n := range []struct {
		name string
		dst  *int64
	}{{"httpResponseBytes", &l.HTTPResponseBytes}, {"outputBytes", &l.OutputBytes}} {
		if f, ok := m.get(n.name); ok {
			if v, ok := d.integer64(f); ok {
				*n.dst = v
			}
		}
	}
}

// article is the indefinite article of a kind's name: "n" before a vowel, else "".
func article(kind string) string {
	if kind != "" && strings.ContainsRune("AEIOU", rune(kind[0])) {
		return "n"
	}
	return ""
}

// egress decodes an Egress's spec. It returns nil when fqn is "" (metadata had errors).
// What the wire types can hold is checked here; the rest is Egress.Validate's, and what the
// configuration means is the egress type's (checked when the egress is applied).
func (d *decoder) egress(spec fieldMap, fqn string, labels map[string]string) *Egress {
	d.allow(&spec, egressFields)
	e := &Egress{FQN: fqn, Labels: labels}
	if f, ok := spec.get("type"); !ok {
		d.failf(nil, "spec.type", "missing (the egress type, e.g. webhook or redis-stream)")
	} else if s, ok := d.str(f); ok {
		e.Type = strings.TrimSpace(s)
		if e.Type == "" {
			d.failf(f.val, f.path, "empty (the egress type, e.g. webhook or redis-stream)")
		}
	}
	if f, ok := spec.get("config"); ok {
		e.Config = d.egressConfig(f)
	}
	if fqn == "" {
		return nil
	}
	return e
}

// egressConfigWant describes what an egress's config value may be, for errors.
const egressConfigWant = "a string, a list of strings or a mapping of names to strings"

// egressConfig decodes an egress's spec.config: a mapping whose values are scalars (taken
// as written, as strings), lists of scalars or mappings of names to scalars. An empty
// mapping is nil, as the writer leaves it out; an empty list or mapping as a value is kept.
func (d *decoder) egressConfig(f field) map[string]any {
	m, ok := d.mapping(f.val, f.path, " of names to "+egressConfigWant)
	if !ok || len(m.order) == 0 {
		return nil
	}
	out := make(map[string]any, len(m.order))
	for _, name := range m.order {
		vf := m.fields[name]
		switch v := vf.val; {
		case v.Kind == yaml.ScalarNode && !isNull(v):
			out[name] = v.Value
		case v.Kind == yaml.SequenceNode:
			elems, _ := d.list(vf)
			list := make([]string, 0, len(elems))
			for _, e := range elems {
				if s, ok := d.str(e); ok {
					list = append(list, s)
				}
			}
			out[name] = list
		case v.Kind == yaml.MappingNode:
			sm, ok := d.stringMap(vf)
			if ok && sm == nil {
				sm = map[string]string{}
			}
			out[name] = sm
		default:
			d.failf(v, vf.path, "must be %s, not %s", egressConfigWant, describe(v))
		}
	}
	return out
}
