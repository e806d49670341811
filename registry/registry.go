// Package registry owns the set of applied objects — features, data sources, plugins and
// egresses — and how it changes: applying a set of manifest objects all or nothing,
// deleting, listing, restoring what a Store holds when a process starts (each object
// bounded, quarantining what fails), and the lifecycle of the Wasm modules the objects
// name. It knows no
// transport: the server (package server) is a thin adapter that converts requests and maps
// the registry's typed errors (errors.go) to codes, and the shell uses the same Registry
// without a Store.
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/manifest"
)

// DefaultRestoreTimeout is how long restoring one stored object may take when
// Config.RestoreTimeout is zero.
const DefaultRestoreTimeout = 30 * time.Second

// DefaultRestoreGrace is how long, past its deadline, Restore waits for an object's apply to
// return before abandoning it, when Config.RestoreGrace is zero.
const DefaultRestoreGrace = 2 * time.Second

// Modules is what the registry needs of a Wasm host (*host.Host satisfies it): module bytes
// are added (AddModule) and held (Hold) while an apply is decided, compiled outside the
// registry's lock (Prepare), and released when no applied feature names them (Retain, which
// the registry calls with the whole applied set after every change, under its lock).
type Modules interface {
	// AddModule stores module bytes and returns their reference ("sha256:<hex>").
	AddModule(wasm []byte) (string, error)
	// Hold keeps the modules refs name until release is called.
	Hold(refs ...string) (release func())
	// Prepare compiles and checks the modules f names without applying anything.
	Prepare(ctx context.Context, f *engine.Feature) error
	// Retain keeps the modules the features name and releases the others not held.
	Retain(ctx context.Context, features []*engine.Feature)
}

// Config configures a Registry.
type Config struct {
	// Engine holds the applied set. Required.
	Engine *engine.Engine
	// Modules is the Wasm host; nil (or a nil pointer) means none: manifests naming Wasm
	// modules are refused with ErrNoModules.
	Modules Modules
	// Plugins is the plugin host; nil (or a nil pointer) means none: Plugin manifests are
	// refused with ErrUnsupportedKind.
	Plugins Plugins
	// Egresses is the egress set (what programs emit to); nil (or a nil pointer) means
	// none: Egress manifests are refused with ErrUnsupportedKind.
	Egresses Egresses
	// Store persists what is applied; nil persists nothing (Restore then does nothing).
	Store Store
	// RestoreTimeout bounds restoring one stored object; 0 is DefaultRestoreTimeout.
	RestoreTimeout time.Duration
	// RestoreGrace is how long Restore waits past RestoreTimeout before abandoning an apply
	// that has not returned; 0 is DefaultRestoreGrace.
	RestoreGrace time.Duration
	// Logger receives the registry's log lines; nil is slog.Default().
	Logger *slog.Logger
	// SyncPeriod is how often the registry lists a SharedStore's versions to catch up on
	// changes whose notification it missed; 0 is DefaultSyncPeriod.
	SyncPeriod time.Duration
	// ResyncPeriod is how often it re-checks every object of a SharedStore (retrying the
	// quarantined ones); 0 is DefaultResyncPeriod.
	ResyncPeriod time.Duration
}

// Key names a registry object.
type Key struct {
	// Kind is "Feature", "DataSource", "Plugin" or "Egress" (manifest.KindFeature, …).
	Kind string
	// FQN is the object's "namespace.name".
	FQN string
}

// Action is what Apply did, or would do in a dry run, with an object.
type Action string

// Actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged" // identical to the applied object: left alone
)

// Applied reports one object of an Apply, in request order.
type Applied struct {
	Key
	Action Action
}

// ApplyOptions modify Apply.
type ApplyOptions struct {
	// DryRun checks everything an apply checks and changes nothing: see Apply.
	DryRun bool
}

// storedObject is what the Store holds for an object, as far as this registry knows.
type storedObject struct {
	manifest []byte   // canonical manifest (manifest.Marshal)
	modules  []string // module references
}

// Registry serialises the changes of the set of applied objects and keeps track of what the
// Store holds. It is safe for concurrent use.
type Registry struct {
	eng     *engine.Engine
	mods    Modules  // nil: no Wasm host
	plugs   Plugins  // nil: no plugin host
	egs     Egresses // nil: no egresses
	store   Store    // nil: nothing is persisted
	log     *slog.Logger
	timeout time.Duration
	grace   time.Duration

	mu     sync.Mutex
	stored map[Key]storedObject
	// plugins holds the applied plugins by FQN (the engine knows none).
	plugins map[string]*appliedPlugin
	// egresses holds the applied egresses by FQN (the engine resolves them through the
	// Egresses, not the registry).
	egresses map[string]*appliedEgress
	// modules holds the bytes of the modules stored objects name, so that an object naming
	// a module by reference alone can be stored again. Only kept with a Store.
	modules map[string][]byte
	// quarantine holds the stored objects that did not restore (restore.go); changes are
	// published to quarantineList, which Quarantined reads without taking mu.
	quarantine     map[Key]*quarantined
	quarantineList atomic.Pointer[[]Quarantined]
	// pending holds the objects whose restore was abandoned at its deadline and whose apply
	// has not returned yet: Apply refuses them (ErrPending) until it has.
	pending map[Key]*quarantined

	// With a SharedStore (shared.go): shared is the Store as one; versions holds the
	// version of each stored object as this registry last saw it; follower converges on
	// the other replicas' changes.
	shared       SharedStore
	versions     map[Key]string
	follower     *follower
	syncPeriod   time.Duration
	resyncPeriod time.Duration
}

// New returns a Registry over cfg.Engine. It restores nothing: call Restore.
func New(cfg Config) (*Registry, error) {
	if cfg.Engine == nil {
		return nil, errors.New("registry: Config.Engine is required")
	}
	if cfg.RestoreTimeout < 0 {
		return nil, fmt.Errorf("registry: Config.RestoreTimeout is negative (%v)", cfg.RestoreTimeout)
	}
	if cfg.RestoreGrace < 0 {
		return nil, fmt.Errorf("registry: Config.RestoreGrace is negative (%v)", cfg.RestoreGrace)
	}
	if cfg.SyncPeriod < 0 || cfg.ResyncPeriod < 0 {
		return nil, fmt.Errorf("registry: Config.SyncPeriod (%v) or ResyncPeriod (%v) is negative", cfg.SyncPeriod, cfg.ResyncPeriod)
	}
	r := &Registry{eng: cfg.Engine, mods: cfg.Modules, plugs: cfg.Plugins, egs: cfg.Egresses, store: cfg.Store, log: cfg.Logger,
		plugins: map[string]*appliedPlugin{}, egresses: map[string]*appliedEgress{},
		timeout: cmpOr(cfg.RestoreTimeout, DefaultRestoreTimeout), grace: cmpOr(cfg.RestoreGrace, DefaultRestoreGrace),
		stored: map[Key]storedObject{}, modules: map[string][]byte{},
		quarantine: map[Key]*quarantined{}, pending: map[Key]*quarantined{}, versions: map[Key]string{},
		syncPeriod: cmpOr(cfg.SyncPeriod, DefaultSyncPeriod), resyncPeriod: cmpOr(cfg.ResyncPeriod, DefaultResyncPeriod)}
	if isNil(r.mods) {
		r.mods = nil
	}
	if isNil(r.store) {
		r.store = nil
	}
	if isNil(r.plugs) {
		r.plugs = nil
	}
	if isNil(r.egs) {
		r.egs = nil
	}
	r.shared, _ = r.store.(SharedStore)
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// isNil reports whether an interface value is nil or holds a nil pointer (a *host.Host
// variable left nil and assigned to Config.Modules).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// Engine returns the engine the registry applies to.
func (r *Registry) Engine() *engine.Engine { return r.eng }

// forgetUnusedModules drops the module bytes no stored object names. Callers hold mu.
func (r *Registry) forgetUnusedModules() {
	used := map[string]bool{}
	for _, o := range r.stored {
		for _, ref := range o.modules {
			used[ref] = true
		}
	}
	maps.DeleteFunc(r.modules, func(ref string, _ []byte) bool { return !used[ref] })
}

// applyStep is one manifest object of an Apply on its way to being applied.
type applyStep struct {
	m         manifest.Manifest
	key       Key
	canonical []byte
	modules   map[string][]byte // every module the object names, by reference, when known
	action    Action
	oldF      *engine.Feature
	oldDS     *engine.DataSource

	// A plugin's and an egress's: pluginModule a plugin's module's bytes; same when it was
	// identical to the applied one when the request was checked (it is then not loaded);
	// loaded what Plugins.Load or Egresses.Load returned; replaced the handle of the object
	// it replaced once applied.
	pluginModule []byte
	same         bool
	loaded       io.Closer
	replaced     io.Closer
}

// Apply applies manifest objects with the Wasm modules they name, all or nothing.
//
// modules holds module bytes by the name a feature's builder.module or a middleware's
// module gives them (a path, or a "sha256:<hex>" reference that must match the bytes); a
// reference without bytes must name a module the registry holds. Apply rewrites those names
// in the features of ms to the modules' references.
//
// The whole request is checked (modules, canonical form) before anything is applied: the
// modules are added to Modules and held, then compiled outside the registry's lock
// (Modules.Prepare), so that a slow compile holds up no other change; then the request is
// decided and applied under the lock. Data sources are applied before features. An object
// identical to the applied one is left alone (Unchanged). A failure while applying (the
// engine refusing an object, a middleware that does not resolve, the Store) undoes what the
// request had applied, in the engine and in the Store. A quarantined object applied
// successfully leaves the quarantine; one whose abandoned restore has not returned is
// refused with ErrPending. After every change Modules.Retain is told the applied set, so
// that what the request added and did not apply is released.
//
// With opts.DryRun, Apply does all of that and then undoes it: each object is applied to the
// engine and the request is undone before the registry's lock is released (apply-then-undo,
// like the rollback of a failed request, so that everything the engine checks — middlewares
// resolved, modules loaded, compatibility, cycles, data sources of the same request — is
// checked exactly). Nothing is written to the Store, the quarantine is unchanged, and no
// module is kept. While the lock is held the objects are briefly visible to the engine's
// readers; a created feature's undo deletes it, as a failed request's rollback does.
//
// Errors: an *ObjectError for an object that could not be applied (wrapping the engine's or
// the host's error), a *FieldError for module bytes that are wrong or missing, ErrNoModules,
// ErrModuleUnknown, ErrPending, or the Store's error (wrapped; nothing was applied).
func (r *Registry) Apply(ctx context.Context, ms []manifest.Manifest, modules map[string][]byte, opts ApplyOptions) (_ []Applied, err error) {
	r.mu.Lock()
	steps, release, err := r.stepsOf(ms, modules)
	r.mu.Unlock()
	defer release()
	defer func() { r.finishLoaded(ctx, steps, err == nil && !opts.DryRun) }()
	if err != nil {
		return nil, err
	}
	if err := r.prepare(ctx, steps); err != nil {
		return nil, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.retain(ctx) // before release: what this request added and did not apply goes
	for _, st := range steps {
		if err := r.pendingError(st); err != nil {
			return nil, err
		}
	}
	if err := r.decideActions(steps); err != nil {
		return nil, err
	}

	var undo []func(context.Context)
	rollback := func() {
		uctx := context.WithoutCancel(ctx)
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i](uctx)
		}
	}
	// Data sources, plugins and egresses first, so that the features of the same request
	// find theirs (the store's order, Kinds).
	for _, kind := range []manifest.Kind{manifest.KindDataSource, manifest.KindPlugin, manifest.KindEgress, manifest.KindFeature} {
		for _, st := range steps {
			if st.m.Kind != kind || st.action == Unchanged {
				continue
			}
			u, err := r.applyObject(ctx, st, steps)
			if err != nil {
				rollback()
				return nil, &ObjectError{Pos: st.m.Pos.String(), Key: st.key, Err: err}
			}
			undo = append(undo, u)
		}
	}
	out := make([]Applied, len(steps))
	for i, st := range steps {
		out[i] = Applied{Key: st.key, Action: st.action}
	}
	if opts.DryRun {
		rollback()
		for _, a := range out {
			r.log.LogAttrs(ctx, slog.LevelDebug, "registry: checked (dry run)", slog.String("kind", a.Kind),
				slog.String("fqn", a.FQN), slog.String("action", string(a.Action)))
		}
		return out, nil
	}
	if err := r.persist(ctx, steps, &undo); err != nil {
		rollback()
		return nil, fmt.Errorf("registry store: nothing was applied: %w", err)
	}

	// Applied, so no longer quarantined.
	for _, st := range steps {
		r.unquarantine(st.key)
	}
	for _, a := range out {
		r.log.LogAttrs(ctx, slog.LevelInfo, "registry: applied", slog.String("kind", a.Kind),
			slog.String("fqn", a.FQN), slog.String("action", string(a.Action)))
	}
	return out, nil
}

// pendingError refuses an object whose abandoned restore has not returned. Callers hold mu.
func (r *Registry) pendingError(st *applyStep) error {
	if _, ok := r.pending[st.key]; !ok {
		return nil
	}
	return &kindError{kind: ErrPending, msg: fmt.Sprintf(
		"%s: the restore of %s %s when this server started overran its deadline and has not returned yet: retry later (deleting it works meanwhile)",
		st.m.Pos, st.key.Kind, st.key.FQN)}
}

// stepsOf turns manifests into steps: the modules they name are resolved and added to
// Modules, and held until release is called — also when it fails, so that release lets go
// of what it added. Callers hold mu.
func (r *Registry) stepsOf(ms []manifest.Manifest, provided map[string][]byte) (steps []*applyStep, release func(), err error) {
	var releases []func()
	hold := func(ref string) {
		if r.mods != nil {
			releases = append(releases, r.mods.Hold(ref))
		}
	}
	release = func() {
		for _, rel := range releases {
			rel()
		}
	}
	steps = make([]*applyStep, len(ms))
	for i, mf := range ms {
		st := &applyStep{m: mf, key: Key{string(mf.Kind), mf.FQN()}}
		if err := r.pendingError(st); err != nil {
			return nil, release, err
		}
		switch {
		case mf.Plugin != nil:
			err = r.resolvePluginModule(st, provided)
		case mf.Egress != nil:
			err = r.checkEgressKind(st)
		default:
			err = r.resolveModules(st, provided, hold)
		}
		if err != nil {
			return nil, release, err
		}
		canonical, err := manifest.Marshal(st.m)
		if err != nil {
			return nil, release, fmt.Errorf("%s: %w", mf.Pos, err)
		}
		st.canonical = canonical
		if ap := r.plugins[st.key.FQN]; mf.Plugin != nil && ap != nil {
			st.same = bytes.Equal(ap.canonical, canonical)
		}
		if ae := r.egresses[st.key.FQN]; mf.Egress != nil && ae != nil {
			st.same = bytes.Equal(ae.canonical, canonical)
		}
		steps[i] = st
	}
	return steps, release, nil
}

// prepare compiles the Wasm modules of a request's features (Modules.Prepare) and loads its
// plugins (Plugins.Load) and egresses (Egresses.Load), outside the registry's lock.
func (r *Registry) prepare(ctx context.Context, steps []*applyStep) error {
	for _, st := range steps {
		var err error
		switch {
		case st.m.Plugin != nil:
			err = r.loadPlugin(ctx, st)
		case st.m.Egress != nil:
			err = r.loadEgress(ctx, st)
		case st.m.Feature != nil && r.mods != nil:
			err = r.mods.Prepare(ctx, st.m.Feature)
		}
		if err != nil {
			return &ObjectError{Pos: st.m.Pos.String(), Key: st.key, Err: err}
		}
	}
	return nil
}

// retain tells Modules which features are applied, so that it releases the modules no
// applied feature names. Callers hold mu, after every change.
func (r *Registry) retain(ctx context.Context) {
	if r.mods != nil {
		r.mods.Retain(context.WithoutCancel(ctx), r.eng.Features())
	}
}

// resolveModules replaces the module names a feature gives by the references of the
// modules the request carries under those names (adding them to Modules), and collects the
// bytes of every module the object names for the Store. Callers hold mu.
func (r *Registry) resolveModules(st *applyStep, provided map[string][]byte, hold func(ref string)) error {
	f := st.m.Feature
	if f == nil {
		return nil
	}
	type ref struct {
		path string
		ptr  *string
	}
	refs := []ref{{"spec.builder.module", &f.Builder.Module}}
	for j := range f.Middlewares {
		refs = append(refs, ref{fmt.Sprintf("spec.middlewares[%d].module", j), &f.Middlewares[j].Module})
	}
	for _, rf := range refs {
		name := *rf.ptr
		if name == "" {
			continue
		}
		at := fmt.Sprintf("%s: %s", st.m.Pos, rf.path)
		if r.mods == nil {
			return &kindError{kind: ErrNoModules, msg: fmt.Sprintf(
				"%s: names the Wasm module %q, but this server has no Wasm host: it applies sourceless features and native middlewares only", at, name)}
		}
		field := moduleField(name)
		b, ok, err := providedModule(at, name, provided)
		switch {
		case err != nil:
			return err
		case !ok:
			// A module the registry should already have.
			hold(name)
			if b, ok = r.modules[name]; !ok && r.store != nil {
				return unknownModule(at, name)
			}
		}
		if ok {
			hold(moduleref.Of(b)) // before Modules has it: no sweep may drop it in between
			digest, err := r.mods.AddModule(b)
			if err != nil {
				return &FieldError{Field: field, Err: err}
			}
			*rf.ptr = digest
			if r.store != nil {
				if st.modules == nil {
					st.modules = map[string][]byte{}
				}
				st.modules[digest] = b
			}
		}
	}
	return nil
}

// moduleField is the request field that carries the bytes of the module a manifest names.
func moduleField(name string) string { return "modules[" + strconv.Quote(name) + "]" }

// providedModule returns the bytes of the module a manifest names at at, as the request
// provides them (ok), or ok false for a digest the request does not provide (the caller
// looks for it in what the registry holds, or fails with unknownModule). A name that is not
// a digest must be provided; bytes sent under a digest must have it.
func providedModule(at, name string, provided map[string][]byte) (b []byte, ok bool, err error) {
	b, ok = provided[name]
	switch {
	case ok && moduleref.Is(name):
		if got := moduleref.Of(b); got != name {
			return nil, false, &FieldError{Field: moduleField(name), Err: fmt.Errorf("the bytes have digest %s, not the one they are sent under", got)}
		}
	case ok:
	case moduleref.Is(name):
	default:
		return nil, false, &FieldError{Field: moduleField(name), Err: fmt.Errorf("missing: %s names it; send the module's bytes under that key", at)}
	}
	return b, ok, nil
}

// unknownModule is the error for a digest a manifest names at at that neither the request
// nor the registry has.
func unknownModule(at, name string) error {
	return &kindError{kind: ErrModuleUnknown, msg: fmt.Sprintf(
		"%s: module %s is not in this server's registry; send its bytes in %s", at, name, moduleField(name))}
}

// decideActions compares each object with the applied one of the same name.
func (r *Registry) decideActions(steps []*applyStep) error {
	features := map[string]*engine.Feature{}
	for _, f := range r.eng.Features() {
		features[f.FQN] = f
	}
	sources := map[string]*engine.DataSource{}
	for _, ds := range r.eng.DataSources() {
		sources[ds.FQN] = ds
	}
	for _, st := range steps {
		var old []byte
		var err error
		var had bool
		switch {
		case st.m.Plugin != nil:
			if ap := r.plugins[st.key.FQN]; ap != nil {
				had, old = true, ap.canonical
			}
		case st.m.Egress != nil:
			if ae := r.egresses[st.key.FQN]; ae != nil {
				had, old = true, ae.canonical
			}
		case st.m.Feature != nil:
			if f := features[st.key.FQN]; f != nil {
				st.oldF = f.Clone()
				old, err = manifest.Feature(f)
			}
		default:
			if ds := sources[st.key.FQN]; ds != nil {
				st.oldDS = ds.Clone()
				old, err = manifest.DataSource(ds)
			}
		}
		if err != nil {
			return fmt.Errorf("registry: write the applied %s %s: %w", st.key.Kind, st.key.FQN, err)
		}
		switch {
		case st.oldF == nil && st.oldDS == nil && !had:
			st.action = Created
		case bytes.Equal(old, st.canonical):
			st.action = Unchanged
		default:
			st.action = Updated
		}
	}
	return nil
}

// applyObject applies one object of a request's steps and returns how to undo it.
func (r *Registry) applyObject(ctx context.Context, st *applyStep, steps []*applyStep) (func(context.Context), error) {
	fqn := st.key.FQN
	if st.m.Plugin != nil {
		return r.applyPlugin(ctx, st, steps)
	}
	if st.m.Egress != nil {
		return r.applyEgress(ctx, st)
	}
	if ds := st.m.DataSource; ds != nil {
		if err := r.eng.ApplyDataSource(ctx, ds); err != nil {
			return nil, err
		}
		old := st.oldDS
		return func(ctx context.Context) {
			var err error
			if old != nil {
				err = r.eng.ApplyDataSource(ctx, old)
			} else {
				err = r.eng.DeleteDataSource(ctx, fqn)
			}
			r.logUndo(ctx, "DataSource", fqn, err)
		}, nil
	}
	if err := r.eng.Apply(ctx, st.m.Feature); err != nil {
		return nil, err
	}
	old := st.oldF
	return func(ctx context.Context) {
		var err error
		if old != nil {
			err = r.eng.Apply(ctx, old)
		} else {
			err = r.eng.Delete(ctx, fqn)
		}
		r.logUndo(ctx, "Feature", fqn, err)
	}, nil
}

func (r *Registry) logUndo(ctx context.Context, kind, fqn string, err error) {
	if err != nil {
		r.log.LogAttrs(ctx, slog.LevelError, "registry: could not undo a partly applied request",
			slog.String("kind", kind), slog.String("fqn", fqn), slog.Any("error", err))
	}
}

// persist saves the objects of a request to the Store (those whose stored manifest
// differs), adding to undo how to restore the Store's previous content. Callers hold mu.
func (r *Registry) persist(ctx context.Context, steps []*applyStep, undo *[]func(context.Context)) error {
	if r.store == nil {
		return nil
	}
	sctx := context.WithoutCancel(ctx)
	for _, st := range steps {
		prev, had := r.stored[st.key]
		if had && bytes.Equal(prev.manifest, st.canonical) {
			continue
		}
		mods := st.modules
		if err := r.save(sctx, st.key, st.canonical, mods); err != nil {
			return err
		}
		key := st.key
		prevModules := map[string][]byte{}
		for _, ref := range prev.modules {
			prevModules[ref] = r.modules[ref]
		}
		*undo = append(*undo, func(ctx context.Context) {
			var err error
			if had {
				err = r.save(ctx, key, prev.manifest, prevModules)
				r.stored[key] = prev
			} else {
				err = r.remove(ctx, key)
				delete(r.stored, key)
			}
			if err != nil {
				r.log.LogAttrs(ctx, slog.LevelError, "registry: could not restore the store after a failed request",
					slog.String("kind", key.Kind), slog.String("fqn", key.FQN), slog.Any("error", err))
			}
		})
		obj := storedObject{manifest: st.canonical}
		for ref, b := range mods {
			obj.modules = append(obj.modules, ref)
			r.modules[ref] = b
		}
		r.stored[st.key] = obj
	}
	r.forgetUnusedModules()
	return nil
}

// Delete removes the object name names ("namespace.name", or a bare name in the engine's
// default namespace) and returns which it removed:
//
//   - an applied feature: its stored manifest goes first (if that fails nothing has
//     changed), then the engine deletes it and drops its values (which cannot be undone;
//     its only failure left is that drop, after the feature is gone, and the error says so);
//   - else a quarantined feature: its stored manifest goes, the values stored for it are
//     dropped when its manifest still parses, and it leaves the quarantine;
//   - else an applied data source, which no feature may use (ErrInUse);
//   - else a quarantined data source;
//   - else an applied plugin, which no feature may name (ErrInUse; an encoding naming it
//     in a selector fails from then on);
//   - else a quarantined plugin;
//   - else an applied egress, which is closed (messages on their way to it fail, and the
//     engine retries them until it is applied again or they run out of attempts);
//   - else a quarantined egress.
//
// No object of the name is ErrNotFound (wrapping the engine's error, which suggests near
// names). A name that does not parse is the engine's error (engine.ErrInvalidSelector).
func (r *Registry) Delete(ctx context.Context, name string) (Key, error) {
	if _, err := r.eng.ResolveFQN(name); err != nil {
		return Key{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.retain(ctx)
	f, err := r.eng.FeatureDescriptor(ctx, name)
	if errors.Is(err, engine.ErrFeatureNotFound) {
		for _, try := range []func(context.Context, string) (Key, bool, error){
			func(ctx context.Context, name string) (Key, bool, error) {
				return r.deleteQuarantined(ctx, name, manifest.KindFeature)
			},
			r.deleteDataSource,
			func(ctx context.Context, name string) (Key, bool, error) {
				return r.deleteQuarantined(ctx, name, manifest.KindDataSource)
			},
			r.deletePlugin,
			func(ctx context.Context, name string) (Key, bool, error) {
				return r.deleteQuarantined(ctx, name, manifest.KindPlugin)
			},
			r.deleteEgress,
			func(ctx context.Context, name string) (Key, bool, error) {
				return r.deleteQuarantined(ctx, name, manifest.KindEgress)
			},
		} {
			if key, done, derr := try(ctx, name); done || derr != nil {
				return key, derr
			}
		}
		return Key{}, &kindError{kind: ErrNotFound, msg: err.Error(), cause: err}
	}
	if err != nil {
		return Key{}, err
	}
	key := Key{string(manifest.KindFeature), f.FQN}
	if err := r.unstore(ctx, key); err != nil {
		return key, fmt.Errorf("registry store: nothing was deleted: %w", err)
	}
	if err := r.eng.Delete(context.WithoutCancel(ctx), f.FQN); err != nil {
		return key, err
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted", slog.String("kind", key.Kind), slog.String("fqn", key.FQN))
	return key, nil
}

// deleteDataSource deletes the data source name names, if one is applied. A bare name is in
// the engine's default namespace (Engine.ResolveFQN). Callers hold mu.
func (r *Registry) deleteDataSource(ctx context.Context, name string) (Key, bool, error) {
	fqn, err := r.eng.ResolveFQN(name)
	if err != nil {
		return Key{}, false, nil
	}
	key := Key{string(manifest.KindDataSource), fqn}
	var old *engine.DataSource
	for _, ds := range r.eng.DataSources() {
		if ds.FQN == fqn {
			old = ds.Clone()
		}
	}
	if old == nil {
		return key, false, nil
	}
	var users []string
	for _, f := range r.eng.Features() {
		if f.DataSource == fqn {
			users = append(users, f.FQN)
		}
	}
	if len(users) > 0 {
		return key, true, &kindError{kind: ErrInUse, msg: fmt.Sprintf(
			"delete data source %s: it still feeds %s: delete those features first", fqn, strings.Join(users, ", "))}
	}
	if err := r.eng.DeleteDataSource(ctx, fqn); err != nil {
		return key, true, err
	}
	if err := r.unstore(ctx, key); err != nil {
		if aerr := r.eng.ApplyDataSource(context.WithoutCancel(ctx), old); aerr != nil {
			r.logUndo(ctx, key.Kind, fqn, aerr)
		}
		return key, true, fmt.Errorf("registry store: nothing was deleted: %w", err)
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted", slog.String("kind", key.Kind), slog.String("fqn", fqn))
	return key, true, nil
}

// unstore removes an object from the Store. Callers hold mu.
func (r *Registry) unstore(ctx context.Context, key Key) error {
	if r.store == nil {
		return nil
	}
	if err := r.remove(context.WithoutCancel(ctx), key); err != nil {
		return err
	}
	delete(r.stored, key)
	r.forgetUnusedModules()
	return nil
}

// Listing is what List returns: the applied objects and the quarantined ones.
type Listing struct {
	// Features and DataSources are the applied objects, sorted by FQN. They are the
	// engine's: do not modify them.
	Features    []*engine.Feature
	DataSources []*engine.DataSource
	// Plugins are the applied plugins, sorted by FQN; the registry's: do not modify them.
	Plugins []*manifest.Plugin
	// Egresses are the applied egresses, sorted by FQN; the registry's: do not modify them.
	Egresses []*manifest.Egress
	// Quarantined are the stored objects that did not restore, in the order of Kinds (data
	// sources, plugins, egresses, features), each kind sorted by FQN.
	Quarantined []Quarantined
}

// List lists the applied features, data sources, plugins and egresses and the quarantined
// objects, of one namespace, or of all when namespace is "". A namespace that is not a
// valid name is a *FieldError on the field "namespace".
func (r *Registry) List(namespace string) (Listing, error) {
	ns := strings.ToLower(strings.TrimSpace(namespace))
	if ns != "" {
		if err := engine.ValidName(ns); err != nil {
			return Listing{}, &FieldError{Field: "namespace", Err: err}
		}
	}
	in := func(fqn string) bool { return ns == "" || strings.HasPrefix(fqn, ns+".") }
	var out Listing
	for _, f := range r.eng.Features() {
		if in(f.FQN) {
			out.Features = append(out.Features, f)
		}
	}
	for _, ds := range r.eng.DataSources() {
		if in(ds.FQN) {
			out.DataSources = append(out.DataSources, ds)
		}
	}
	out.Plugins = r.Plugins(ns)
	out.Egresses = r.Egresses(ns)
	for _, q := range r.Quarantined() {
		if in(q.FQN) {
			out.Quarantined = append(out.Quarantined, q)
		}
	}
	return out, nil
}
