package engine

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultNamespace is the namespace of a selector or manifest that names none.
const DefaultNamespace = "default"

// MaxNameLen is the longest namespace or feature name accepted.
const MaxNameLen = 128

// MaxVersion is the largest previous version a selector may ask for (@-N).
const MaxVersion = 1 << 16

// Selector names a feature and how to read it:
//
//	[namespace.]name[+aggr][@-version][[encoding]]
//
// for example fraud.amount+avg, geo.city@-1 or user.email[hash]. Namespaces and names are
// letters, digits and underscores, starting and ending with a letter or digit; they are
// case-insensitive and normalised to lower case.
type Selector struct {
	// FQN is "namespace.name".
	FQN string
	// Namespace and Name are the FQN's parts.
	Namespace, Name string
	// Aggr is the aggregation asked for with +aggr, or AggrUnknown for none.
	Aggr AggrFn
	// Version is N of @-N: 0 is the current value, 1 the previous one, ….
	Version int
	// Encoding is the name inside [...] (a name, or namespace.name for a plugin's), or "".$
	Encoding string
}

// String returns the canonical form of the selector, always with its namespace.
func (s Selector) String() string {
	var b strings.Builder
	b.WriteString(s.FQN)
	if s.Aggr != AggrUnknown {
		b.WriteByte('+')
		b.WriteString(s.Aggr.String())
	}
	if s.Version > 0 {
		b.WriteString("@-")
		b.WriteString(strconv.Itoa(s.Version))
	}
	if s.Encoding != "" {
		b.WriteByte('[')
		b.WriteString(s.Encoding)
		b.WriteByte(']')
	}
	return b.String()
}

func selectorError(sel, part, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s: %s", ErrInvalidSelector, sel, part, fmt.Sprintf(format, args...))
}

// ParseSelector parses a selector. A selector without a namespace gets defaultNamespace;
// when that is "" too, the selector is invalid. The error names the part that is wrong.
//
// ParseSelector does not allocate for a lower-case selector that names its namespace.
func ParseSelector(s, defaultNamespace string) (Selector, error) {
	var sel Selector
	if s == "" {
		return sel, fmt.Errorf("%w: empty selector", ErrInvalidSelector)
	}
	rest := s
	// The FQN runs to the first of '+', '@', '['.
	end := strings.IndexAny(rest, "+@[")
	if end < 0 {
		end = len(rest)
	}
	fqn := rest[:end]
	rest = rest[end:]
	if dot := strings.IndexByte(fqn, '.'); dot >= 0 {
		ns, name := fqn[:dot], fqn[dot+1:]
		if err := checkIdent(s, "namespace", ns); err != nil {
			return sel, err
		}
		if strings.IndexByte(name, '.') >= 0 {
			return sel, selectorError(s, "name", "more than one '.' (want namespace.name)")
		}
		if err := checkIdent(s, "name", name); err != nil {
			return sel, err
		}
		if isLower(fqn) {
			sel.FQN, sel.Namespace, sel.Name = fqn, ns, name
		} else {
			sel.Namespace, sel.Name = strings.ToLower(ns), strings.ToLower(name)
			sel.FQN = sel.Namespace + "." + sel.Name
		}
	} else {
		if err := checkIdent(s, "name", fqn); err != nil {
			return sel, err
		}
		if defaultNamespace == "" {
			return sel, selectorError(s, "namespace", "missing, and no default namespace is set")
		}
		if err := checkIdent(s, "default namespace", defaultNamespace); err != nil {
			return sel, err
		}
		sel.Namespace, sel.Name = strings.ToLower(defaultNamespace), strings.ToLower(fqn)
		sel.FQN = sel.Namespace + "." + sel.Name
	}

	if rest != "" && rest[0] == '+' {
		end := strings.IndexAny(rest[1:], "@[")
		if end < 0 {
			end = len(rest) - 1
		}
		aggr := rest[1 : 1+end]
		if aggr == "" {
			return sel, selectorError(s, "aggregation", "empty after '+'")
		}
		a, err := ParseAggrFn(strings.ToLower(aggr))
		if err != nil {
			return sel, selectorError(s, "aggregation", "%v", err)
		}
		sel.Aggr = a
		rest = rest[1+end:]
	}
	if rest != "" && rest[0] == '@' {
		if len(rest) < 2 || rest[1] != '-' {
			return sel, selectorError(s, "version", "want @-N with N a previous version (e.g. @-1)")
		}
		end := strings.IndexByte(rest, '[')
		if end < 0 {
			end = len(rest)
		}
		digits := rest[2:end]
		if digits == "" {
			return sel, selectorError(s, "version", "missing number after '@-'")
		}
		n := 0
		for i := 0; i < len(digits); i++ {
			c := digits[i]
			if c < '0' || c > '9' {
				return sel, selectorError(s, "version", "%q is not a number", digits)
			}
			n = n*10 + int(c-'0')
			if n > MaxVersion {
				return sel, selectorError(s, "version", "%s is larger than %d", digits, MaxVersion)
			}
		}
		sel.Version = n
		rest = rest[end:]
	}
	if rest != "" && rest[0] == '[' {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return sel, selectorError(s, "encoding", "missing closing ']'")
		}
		enc := rest[1:end]
		if enc == "" {
			return sel, selectorError(s, "encoding", "empty between '[' and ']'")
		}
		// A name, or namespace.name (a plugin's encoding).
		first, second, qualified := strings.Cut(enc, ".")
		if err := checkIdent(s, "encoding", first); err != nil {
			return sel, err
		}
		if qualified {
			if err := checkIdent(s, "encoding", second); err != nil {
				return sel, err
			}
		}
		sel.Encoding = strings.ToLower(enc)
		rest = rest[end+1:]
	}
	if rest != "" {
		return sel, selectorError(s, "suffix", "unexpected %q (the order is +aggr, @-version, [encoding])", rest)
	}
	return sel, nil
}

// ParseFQN parses a fully qualified name, namespace.name; a bare name gets defaultNamespace.
// Unlike ParseSelector it accepts no +aggr, @-version or [encoding].
func ParseFQN(s, defaultNamespace string) (string, error) {
	sel, err := ParseSelector(s, defaultNamespace)
	if err != nil {
		return "", err
	}
	if sel.Aggr != AggrUnknown || sel.Version != 0 || sel.Encoding != "" {
		return "", fmt.Errorf("%w %q: want a feature name (namespace.name) without +aggr, @-version or [encoding]", ErrInvalidSelector, s)
	}
	return sel.FQN, nil
}

// ValidName returns an error if s is not a valid namespace or feature name.
func ValidName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%d characters, more than %d", len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_':
			if i == 0 || i == len(s)-1 {
				return fmt.Errorf("%q starts or ends with '_' (want a letter or digit)", s)
			}
		default:
			return fmt.Errorf("%q has %q at offset %d (want letters, digits and '_')", s, rune(c), i)
		}
	}
	return nil
}

func checkIdent(sel, part, s string) error {
	if err := ValidName(s); err != nil {
		return selectorError(sel, part, "%v", err)
	}
	return nil
}

func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}
