package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/osprey-ml/osprey/engine"
)

// Manifest API versions.
const (
	// APIVersion is the apiVersion of Osprey's own manifests.
	APIVersion = "osprey.dev/v1alpha1"
	// RaptorAPIVersion is the apiVersion of RaptorML manifests, accepted for migration:
	// Feature and DataSource manifests load where their fields map onto Osprey's (see
	// docs/migrating-from-raptor.md). RaptorML has no Plugin or Egress kind.
	RaptorAPIVersion = "k8s.raptor.ml/v1alpha1"
)

// MaxSize is the largest manifest input, in bytes, that Parse and Load accept.
const MaxSize = 8 << 20

// maxErrors bounds the errors reported for one input.
const maxErrors = 100

// ErrInvalid is wrapped by every error of Parse and Load: a manifest does not parse or
// validate. The message has the source, the line and the field path.
var ErrInvalid = errors.New("invalid manifest")

// Kind is the kind of a manifest.
type Kind string

// Manifest kinds.
const (
	KindFeature    Kind = "Feature"
	KindDataSource Kind = "DataSource"
	KindPlugin     Kind = "Plugin"
	KindEgress     Kind = "Egress"
)

// Position locates a manifest, or an error in one.
type Position struct {
	// Source names the input: a file path, or what the caller of Parse passed.
	Source string
	// Document is the 1-based index of the YAML document in the source, counting empty
	// documents; 0 for an error about the whole source.
	Document int
	// Line is the 1-based line in the source, or 0 when unknown.
	Line int
}

// String formats the position as "fraud.yaml: document 2 (line 14)".
func (p Position) String() string {
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

// Manifest is one parsed and validated manifest: a Feature, a DataSource, a Plugin or an
// Egress.
type Manifest struct {
	// Kind says which of Feature, DataSource, Plugin and Egress is set.
	Kind Kind
	// APIVersion is the manifest's apiVersion: APIVersion or RaptorAPIVersion.
	APIVersion string
	// Feature is set when Kind is KindFeature.
	Feature *engine.Feature
	// DataSource is set when Kind is KindDataSource.
	DataSource *engine.DataSource
	// Plugin is set when Kind is KindPlugin.
	Plugin *Plugin
	// Egress is set when Kind is KindEgress.
	Egress *Egress
	// Pos is where the manifest's document starts.
	Pos Position
}

// FQN returns the fully qualified name of the manifest's feature, data source, plugin or
// egress.
func (m Manifest) FQN() string {
	switch {
	case m.Feature != nil:
		return m.Feature.FQN
	case m.DataSource != nil:
		return m.DataSource.FQN
	case m.Plugin != nil:
		return m.Plugin.FQN
	case m.Egress != nil:
		return m.Egress.FQN
	}
	return ""
}

// Error is an error in a manifest. It wraps ErrInvalid and, when there is one, the
// underlying cause (for example an error from engine.Feature.Validate, which wraps a
// *engine.FieldError). Its message reads
//
//	fraud.yaml: document 2 (line 14): spec.staleness: must be ≥ spec.freshness (1m0s < 1h0m0s)
type Error struct {
	// Pos locates the error; its Line is the offending field's line where known.
	Pos Position
	// Path is the field path, e.g. spec.keys[1] or metadata.labels["app.kubernetes.io/name"];
	// "" for an error about the whole document or source.
	Path string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying cause, or nil.
	Err error
}

func (e *Error) Error() string {
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

// Unwrap returns ErrInvalid and the cause, if any.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

// Parse parses the YAML documents in data ("---" separated; empty documents are skipped)
// into Feature, DataSource, Plugin and Egress manifests, and validates them. source names data in
// error messages (usually a file name).
//
// Every field is checked and unknown fields are rejected. On error Parse returns no
// manifests and an error listing the problems of every document (errors.Join of *Error,
// each wrapping ErrInvalid); for an input with one problem the error is that *Error itself.
// An object defined twice (the same kind and FQN) is an error; objects of different kinds
// may share a name (a feature and a plugin, say).
func Parse(data []byte, source string) ([]Manifest, error) {
	ms, errs := parse(data, source)
	errs = append(errs, duplicates(ms)...)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return ms, nil
}

// Load reads and parses manifest files. A path naming a directory loads the directory's
// *.yaml and *.yml files (not its subdirectories, nor hidden files), in name order; a path
// naming a file loads it whatever its extension. The result keeps the order of paths, then
// of files, then of documents. An object defined twice (the same kind and FQN), in one
// file or across files, is an error.
//
// As with Parse, on error no manifests are returned and the error lists every problem
// found; each wraps ErrInvalid (and, for a file that cannot be read, the *fs.PathError's
// cause, e.g. fs.ErrNotExist).
func Load(paths ...string) ([]Manifest, error) {
	var files []string
	var errs []error
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fileError(p, err))
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			errs = append(errs, fileError(p, err))
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
			errs = append(errs, &Error{Pos: Position{Source: p}, Msg: "directory has no *.yaml or *.yml files"})
		}
	}
	var all []Manifest
	for _, file := range files {
		data, err := readFile(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ms, perrs := parse(data, file)
		all = append(all, ms...)
		errs = append(errs, perrs...)
	}
	errs = append(errs, duplicates(all)...)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return all, nil
}

func readFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fileError(file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fileError(file, err)
	}
	return data, nil
}

// fileError reports a file that cannot be read, without repeating its path.
func fileError(path string, err error) error {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	return &Error{Pos: Position{Source: path}, Msg: msg, Err: err}
}

func joinErrors(errs []error) error {
	if len(errs) > maxErrors {
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], &Error{Msg: fmt.Sprintf("… and %d more errors", more)})
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// duplicates reports objects (of one kind and FQN) defined more than once.
func duplicates(ms []Manifest) []error {
	type key struct {
		kind Kind
		fqn  string
	}
	var errs []error
	first := make(map[key]Position, len(ms))
	for _, m := range ms {
		k := key{m.Kind, m.FQN()}
		if p, ok := first[k]; ok {
			errs = append(errs, &Error{Pos: m.Pos, Path: "metadata.name",
				Msg: fmt.Sprintf("%s %s is defined twice (first at %s)", m.Kind, k.fqn, p)})
			continue
		}
		first[k] = m.Pos
	}
	return errs
}
