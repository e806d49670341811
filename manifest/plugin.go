package manifest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// ErrInvalidPlugin is wrapped by the errors of Plugin.Validate, together with a
// *engine.FieldError naming the manifest field at fault.
var ErrInvalidPlugin = errors.New("invalid plugin")

// PluginRole is what a function of a plugin is for.
type PluginRole string

// Plugin function roles.
const (
	// PluginRoleMiddleware: the function is a feature middleware, called at the stages a
	// feature's spec.middlewares names.
	PluginRoleMiddleware PluginRole = "middleware"
	// PluginRoleEncoder: the function encodes a feature's values for reading.
	PluginRoleEncoder PluginRole = "encoder"
	// PluginRoleConnector: the function computes a feature's value from its keys,
	// typically by calling a service over HTTP (spec.allowedHosts).
	PluginRoleConnector PluginRole = "connector"
)

// pluginRoles are the roles, in the order errors list them.
var pluginRoles = []string{string(PluginRoleMiddleware), string(PluginRoleEncoder), string(PluginRoleConnector)}

const (
	// maxFunctionName bounds the length of a plugin function's name.
	maxFunctionName = 128
	// maxMemoryPages is the most 64 KiB pages a 32-bit Wasm memory can have (4 GiB).
	maxMemoryPages = 65536
)

// Plugin is an Extism plugin: a Wasm module whose exported functions serve Osprey as
// middlewares, encoders or connectors, with the configuration, HTTP hosts and limits it
// asks for. Its manifest is a Plugin manifest (see the package documentation). Whether
// the operator allows what it asks for (its hosts, limits beyond a ceiling) is for the
// host that loads it to decide, not for the manifest.
type Plugin struct {
	// FQN is namespace.name, lower-cased, as a feature's.
	FQN string
	// Labels are the manifest's metadata.labels.
	Labels map[string]string
	// Module is the Wasm module's reference as the manifest gives it, as a feature's
	// builder.module: a path (relative to the manifest's file, resolved by whoever sends
	// the module's bytes) or, once uploaded, "sha256:<hex>".
	Module string
	// Functions are the functions the module exports for Osprey, in manifest order.
	Functions []PluginFunction
	// Config is the plugin's Extism config (what config_get reads).
	Config map[string]string
	// AllowedHosts are the hosts the plugin may make HTTP requests to: host names, or
	// glob patterns of them (*.example.com). None: no HTTP.
	AllowedHosts []string
	// Limits are the limits the plugin asks for; a zero field takes the host's default.
	Limits PluginLimits
}

// PluginFunction is one function a plugin's module exports.
type PluginFunction struct {
	// Name is the export's name: [A-Za-z_][A-Za-z0-9_]*, at most 128 characters.
	Name string
	// Role is what the function is for.
	Role PluginRole
}

// PluginLimits are the limits a plugin asks for. A zero field takes the host's default,
// and the host caps each field at the operator's ceiling.
type PluginLimits struct {
	// Timeout bounds one call.
	Timeout time.Duration
	// MemoryPages caps each linear memory, in 64 KiB pages (at most 65536).
	MemoryPages uint32
	// HTTPResponseBytes caps the body of one HTTP response the plugin receives.
	HTTPResponseBytes int64
	// OutputBytes caps one call's output.
	OutputBytes int64
}

// Validate checks that p is consistent. It returns the first problem found, as an error
// wrapping ErrInvalidPlugin and a *engine.FieldError whose Path is the manifest field at
// fault (spec.functions[1].role, spec.allowedHosts[0], …).
func (p *Plugin) Validate() error {
	bad := func(path, format string, args ...any) error {
		return fmt.Errorf("%w %s: %w", ErrInvalidPlugin, p.FQN, &engine.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if _, err := engine.ParseFQN(p.FQN, ""); err != nil {
		return bad("metadata.name", "%v", err)
	}
	if p.Module == "" {
		return bad("spec.module", "missing (the Wasm module: its path, relative to the manifest, or its sha256: reference)")
	}
	if len(p.Functions) == 0 {
		return bad("spec.functions", "at least one function is required (e.g. [{name: handle, role: middleware}])")
	}
	for i, fn := range p.Functions {
		path := indexPath("spec.functions", i)
		if msg := checkFunctionName(fn.Name); msg != "" {
			return bad(path+".name", "%s", msg)
		}
		if j := slices.IndexFunc(p.Functions[:i], func(o PluginFunction) bool { return o.Name == fn.Name }); j >= 0 {
			return bad(path+".name", "duplicate function %q (also %s)", fn.Name, indexPath("spec.functions", j))
		}
		if msg := checkRole(fn.Role); msg != "" {
			return bad(path+".role", "%s", msg)
		}
	}
	if _, ok := p.Config[""]; ok {
		return bad(joinPath("spec.config", ""), "empty name")
	}
	for i, h := range p.AllowedHosts {
		path := indexPath("spec.allowedHosts", i)
		if msg := checkHost(h); msg != "" {
			return bad(path, "%s", msg)
		}
		if j := slices.IndexFunc(p.AllowedHosts[:i], func(o string) bool { return strings.EqualFold(o, h) }); j >= 0 {
			return bad(path, "duplicate host %q (also %s)", h, indexPath("spec.allowedHosts", j))
		}
	}
	l := p.Limits
	switch {
	case l.Timeout < 0:
		return bad("spec.limits.timeout", "%s", timeoutMsg)
	case l.MemoryPages > maxMemoryPages:
		return bad("spec.limits.memoryPages", "%s", memoryPagesMsg(int64(l.MemoryPages)))
	case l.HTTPResponseBytes < 0:
		return bad("spec.limits.httpResponseBytes", "%s", negativeMsg(l.HTTPResponseBytes))
	case l.OutputBytes < 0:
		return bad("spec.limits.outputBytes", "%s", negativeMsg(l.OutputBytes))
	}
	return nil
}

// The messages about limits, which the decoder gives too for what a PluginLimits cannot
// hold.
const timeoutMsg = "must be a positive duration, e.g. 200ms (omit it for the host's default)"

func negativeMsg(v int64) string {
	return "must be ≥ 0 (omit it for the host's default), not " + strconv.FormatInt(v, 10)
}

func memoryPagesMsg(v int64) string {
	if v < 0 {
		return negativeMsg(v)
	}
	return fmt.Sprintf("%d is more than %d (64 KiB pages: 4 GiB, the most a memory can have)", v, maxMemoryPages)
}

// checkFunctionName returns what is wrong with a function name, or "".
func checkFunctionName(s string) string {
	if s == "" {
		return "missing (the name of a function the module exports)"
	}
	if len(s) > maxFunctionName {
		return fmt.Sprintf("%d characters, more than %d", len(s), maxFunctionName)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		if i == 0 && c >= '0' && c <= '9' {
			return fmt.Sprintf("%q starts with a digit (want a letter or '_')", s)
		}
		return fmt.Sprintf("%q has %q at offset %d (want letters, digits and '_')", s, rune(c), i)
	}
	return ""
}

// checkRole returns what is wrong with a role, or "".
func checkRole(r PluginRole) string {
	if slices.Contains(pluginRoles, string(r)) {
		return ""
	}
	if r == "" {
		return "missing (want middleware, encoder or connector)"
	}
	if s := suggest(string(r), pluginRoles); s != "" {
		return fmt.Sprintf("unknown role %q (did you mean %s?)", r, s)
	}
	return fmt.Sprintf("unknown role %q (want middleware, encoder or connector)", r)
}

// checkHost returns what is wrong with an allowed host, or "". A host is a host name or a
// glob pattern of one (the host matches it); what makes it a URL (a scheme, a port, a
// path, credentials) or not a name (space, control characters) is refused.
func checkHost(h string) string {
	if h == "" {
		return "empty (a host name, e.g. api.example.com)"
	}
	ok := true
	for i := 0; i < len(h) && ok; i++ {
		c := h[i]
		ok = c > ' ' && c != 0x7f && !strings.ContainsRune("/:@#\\", rune(c))
	}
	if ok {
		return ""
	}
	msg := fmt.Sprintf("%q: want a host name, without scheme, port or path", h)
	if s := hostOf(h); s != "" && s != h && checkHost(s) == "" {
		return msg + " (did you mean " + s + "?)"
	}
	return msg + " (e.g. api.example.com or *.example.com)"
}

// hostOf returns the host name in what looks like a URL or host:port, or "".
func hostOf(s string) string {
	s = strings.TrimSpace(s)
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if host, port, ok := strings.Cut(s, ":"); ok && !strings.Contains(port, ":") {
		s = host
	}
	return s
}
