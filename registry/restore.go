package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/manifest"
)

// Restoring the registry at start (Restore). Each stored object is restored under its own
// deadline (Config.RestoreTimeout): its manifest is parsed and checked here, then its
// modules are added to Modules and it is applied in a goroutine under a context with that
// deadline. The host stops guest code at the deadline, so the apply normally returns then
// with an error; should it not (a guest the host cannot stop), Restore waits
// Config.RestoreGrace more, then abandons it and goes on with the next object. An object
// that fails or overruns is quarantined: logged, kept in the Store, not applied (so not
// served), and listed by List with its error, until Apply applies it or Delete deletes it.
//
// An abandoned apply is watched until it returns (restoreReturned): if it fails, the
// object stays quarantined; if it succeeds late, the engine serves the object, so it leaves
// the quarantine (or, when it was deleted meanwhile, is deleted from the engine again).
// Until it returns, Apply refuses the object with ErrPending (the late apply would replace
// the new one), while Delete works.

// Quarantined is a stored object that did not restore.
type Quarantined struct {
	Key
	// Err says why ("restore Feature a.b: …").
	Err string
	// Since is when it was quarantined.
	Since time.Time
}

// quarantined is the registry's record of a quarantined object.
type quarantined struct {
	err   string
	since time.Time
}

// Quarantined returns the quarantined objects in the order of Kinds (data sources, plugins,
// egresses, features), each kind sorted by FQN. The slice is shared: do not modify it.
func (r *Registry) Quarantined() []Quarantined {
	if l := r.quarantineList.Load(); l != nil {
		return *l
	}
	return nil
}

// quarantineObject puts an object in quarantine. Callers hold mu.
func (r *Registry) quarantineObject(key Key, q *quarantined) {
	r.quarantine[key] = q
	r.publishQuarantine()
}

// unquarantine takes an object out of quarantine, reporting whether it was in. Callers
// hold mu.
func (r *Registry) unquarantine(key Key) bool {
	if _, ok := r.quarantine[key]; !ok {
		return false
	}
	delete(r.quarantine, key)
	r.publishQuarantine()
	return true
}

// publishQuarantine publishes a fresh, sorted copy of the quarantine. Callers hold mu.
func (r *Registry) publishQuarantine() {
	keys := slices.SortedFunc(maps.Keys(r.quarantine), func(a, b Key) int {
		return cmp.Or(cmp.Compare(kindRank(a.Kind), kindRank(b.Kind)), strings.Compare(a.FQN, b.FQN))
	})
	list := make([]Quarantined, len(keys))
	for i, k := range keys {
		q := r.quarantine[k]
		list[i] = Quarantined{Key: k, Err: q.err, Since: q.since}
	}
	r.quarantineList.Store(&list)
}

// kindRank orders kinds as the Store does (Kinds): data sources, plugins, egresses,
// features.
func kindRank(kind string) int {
	kinds := Kinds()
	if i := slices.Index(kinds, kind); i >= 0 {
		return i
	}
	return len(kinds)
}

// Restore applies what the Store holds in the order of Kinds (data sources, plugins and
// egresses before features), each bounded by Config.RestoreTimeout; an object that fails or
// overruns is quarantined (see above). When ctx is done Restore stops: the object in flight
// and those after it are not restored (nor quarantined), and it returns an error wrapping
// ctx's cause. A Store that cannot be read fails Restore. Without a Store it does nothing.
// Call it once, before serving. With a SharedStore, Restore then starts following it
// (shared.go) until Close.
func (r *Registry) Restore(ctx context.Context) error {
	if r.store == nil {
		return nil
	}
	objs, err := r.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("registry store: load: %w", err)
	}
	// Nothing is served yet; mu keeps the watchers of abandoned applies (restoreReturned)
	// out until the restore is done.
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.retain(ctx) // what failed to restore is released
	for _, o := range objs {
		r.stored[Key{o.Kind, o.FQN}] = storedObject{manifest: o.Manifest, modules: slices.Sorted(maps.Keys(o.Modules))}
		maps.Copy(r.modules, o.Modules)
		if o.Version != "" {
			r.versions[Key{o.Kind, o.FQN}] = o.Version
		}
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: restoring", slog.Int("stored", len(objs)),
		slog.Duration("restore_timeout", r.timeout))
	applied := 0
	for i, o := range objs {
		if ctx.Err() != nil {
			return r.restoreInterrupted(ctx, applied, i, len(objs))
		}
		late, release, err := r.restoreObject(ctx, o)
		if ctx.Err() != nil {
			release()
			return r.restoreInterrupted(ctx, applied, i, len(objs))
		}
		if err == nil {
			release()
			applied++
			continue
		}
		r.quarantineFailed(ctx, o, late, release, err)
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: restored", slog.Int("applied", applied),
		slog.Int("quarantined", len(r.quarantine)), slog.Int("stored", len(objs)))
	if r.shared != nil {
		if err := r.startFollowing(); err != nil {
			return fmt.Errorf("registry: follow the shared store: %w", err)
		}
	}
	return nil
}

// quarantineFailed quarantines a stored object whose restore failed with err (late and
// release as restoreObject returned them). Callers hold mu.
func (r *Registry) quarantineFailed(ctx context.Context, o StoredObject, late <-chan error, release func(), err error) {
	key := Key{o.Kind, o.FQN}
	q := &quarantined{err: fmt.Sprintf("restore %s %s: %v", o.Kind, o.FQN, err), since: time.Now()}
	r.quarantineObject(key, q)
	r.log.LogAttrs(ctx, slog.LevelError, "registry: a stored object does not restore; quarantined (it stays in the store, is not served, and is listed by ListFeatures until applied again or deleted)",
		slog.String("kind", o.Kind), slog.String("fqn", o.FQN), slog.Any("error", err))
	if late != nil {
		r.pending[key] = q
		go r.restoreReturned(key, q, late, release)
	} else {
		release()
	}
}

// restoreInterrupted logs and returns the error of a restore stopped by ctx after done of
// total objects (applied of them applied).
func (r *Registry) restoreInterrupted(ctx context.Context, applied, done, total int) error {
	cause := context.Cause(ctx)
	r.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelWarn, "registry: restore interrupted; the objects left are not restored",
		slog.Int("applied", applied), slog.Int("not_restored", total-done), slog.Int("stored", total), slog.Any("cause", cause))
	return fmt.Errorf("registry restore interrupted with %d of %d stored objects not restored: %w", total-done, total, cause)
}

// restoreObject restores one stored object under its own deadline. It returns the apply's
// error, or, when it abandoned an apply that had not returned by the deadline plus the
// grace, an error saying so and the channel the apply's error will arrive on. When ctx is
// done it returns at once; the caller then checks ctx.
//
// The object's modules are held (Modules.Hold) until release is called: by the caller when
// the apply returned, after the Retain that follows it when it was abandoned. Callers hold
// mu.
func (r *Registry) restoreObject(ctx context.Context, o StoredObject) (late <-chan error, release func(), err error) {
	release = func() {}
	m, err := r.prepareRestore(o)
	if err != nil {
		return nil, release, err
	}
	if m.Plugin != nil {
		// Loading is bounded by ctx and the plugin's own timeout: nothing to abandon.
		actx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		return nil, release, r.restorePlugin(actx, m, o.Modules)
	}
	if m.Egress != nil {
		// Loading an egress runs no guest code and contacts nothing: nothing to abandon.
		actx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		return nil, release, r.restoreEgress(actx, m)
	}
	if r.mods != nil {
		release = r.mods.Hold(slices.Sorted(maps.Keys(o.Modules))...)
	}
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.applyStored(actx, m, o.Modules) }()
	wait := time.NewTimer(r.timeout + r.grace)
	defer wait.Stop()
	select {
	case err := <-done:
		return nil, release, err
	case <-ctx.Done():
		return nil, release, ctx.Err()
	case <-wait.C:
	}
	cancel()
	select {
	case err := <-done: // it returned as the wait ended
		return nil, release, err
	default:
	}
	r.log.LogAttrs(ctx, slog.LevelError, "registry: abandoned the restore of a stored object: its apply did not return by its deadline",
		slog.String("kind", o.Kind), slog.String("fqn", o.FQN), slog.Duration("restore_timeout", r.timeout),
		slog.Duration("waited", r.timeout+r.grace))
	return done, release, fmt.Errorf("did not finish within the restore timeout (%v); abandoned after %v more (its apply had not returned)",
		r.timeout, r.grace)
}

// prepareRestore parses and checks a stored object, and records its canonical manifest.
// It does nothing that can block. Callers hold mu.
func (r *Registry) prepareRestore(o StoredObject) (manifest.Manifest, error) {
	if o.Err != nil {
		return manifest.Manifest{}, o.Err
	}
	ms, err := manifest.Parse(o.Manifest, "registry "+o.Kind+" "+o.FQN)
	if err != nil {
		return manifest.Manifest{}, fmt.Errorf("the stored manifest does not parse: %w", err)
	}
	if len(ms) != 1 || string(ms[0].Kind) != o.Kind || ms[0].FQN() != o.FQN {
		return manifest.Manifest{}, fmt.Errorf("the stored manifest does not hold exactly the %s %s", o.Kind, o.FQN)
	}
	m := ms[0]
	if canonical, err := manifest.Marshal(m); err == nil {
		r.stored[Key{o.Kind, o.FQN}] = storedObject{manifest: canonical, modules: slices.Sorted(maps.Keys(o.Modules))}
	}
	if p := m.Plugin; p != nil {
		if _, ok := o.Modules[p.Module]; !ok {
			return manifest.Manifest{}, fmt.Errorf("it names the module %s, which is not in the registry store", p.Module)
		}
		if r.plugs == nil {
			return manifest.Manifest{}, errors.New("it is a plugin, and this server has no plugin host")
		}
		return m, nil
	}
	if m.Egress != nil {
		if r.egs == nil {
			return manifest.Manifest{}, errors.New("it is an egress, and this server has no egresses configured")
		}
		return m, nil
	}
	if f := m.Feature; f != nil {
		refs := []string{f.Builder.Module}
		for _, mw := range f.Middlewares {
			refs = append(refs, mw.Module)
		}
		for _, ref := range refs {
			if _, ok := o.Modules[ref]; ref != "" && !ok {
				return manifest.Manifest{}, fmt.Errorf("it names the module %s, which is not in the registry store", ref)
			}
		}
	}
	if len(o.Modules) > 0 && r.mods == nil {
		return manifest.Manifest{}, errors.New("it names Wasm modules, and this server has no Wasm host")
	}
	return m, nil
}

// applyStored adds a stored object's modules to Modules and applies it. It may block as
// long as the modules' code runs (see restoreObject). It touches no registry state.
func (r *Registry) applyStored(ctx context.Context, m manifest.Manifest, modules map[string][]byte) error {
	for _, ref := range slices.Sorted(maps.Keys(modules)) {
		got, err := r.mods.AddModule(modules[ref])
		if err != nil {
			return fmt.Errorf("module %s: %w", ref, err)
		}
		if got != ref {
			return fmt.Errorf("module %s: the host digests it as %s", ref, got)
		}
	}
	if m.DataSource != nil {
		return r.eng.ApplyDataSource(ctx, m.DataSource)
	}
	return r.eng.Apply(ctx, m.Feature)
}

// restoreReturned waits for an abandoned apply to return and settles the object: a failure
// leaves it quarantined; a late success leaves it served (and out of quarantine), unless it
// was deleted meanwhile, in which case it is deleted from the engine again.
func (r *Registry) restoreReturned(key Key, q *quarantined, late <-chan error, release func()) {
	err := <-late
	defer release() // after the Retain below: the apply's modules stay while it is applied
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.retain(context.Background())
	if r.pending[key] == q {
		delete(r.pending, key)
	}
	ctx := context.Background()
	attrs := []slog.Attr{slog.String("kind", key.Kind), slog.String("fqn", key.FQN), slog.Duration("after", time.Since(q.since))}
	current := r.quarantine[key] == q
	switch {
	case err != nil:
		r.log.LogAttrs(ctx, slog.LevelWarn, "registry: an abandoned restore returned, failing; the object stays quarantined",
			append(attrs, slog.Bool("still_quarantined", current), slog.Any("error", err))...)
	case current:
		// Logged first, so that whoever sees the quarantine empty finds the line.
		r.log.LogAttrs(ctx, slog.LevelWarn, "registry: an abandoned restore returned, succeeding late: the object is applied and served, and no longer quarantined", attrs...)
		r.unquarantine(key)
	default:
		// Deleted while its apply ran: the late apply put it back in the engine.
		dctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		if key.Kind == string(manifest.KindDataSource) {
			err = r.eng.DeleteDataSource(dctx, key.FQN)
		} else {
			err = r.eng.Delete(dctx, key.FQN)
		}
		level := slog.LevelWarn
		if err != nil {
			level = slog.LevelError
			attrs = append(attrs, slog.Any("error", err))
		}
		r.log.LogAttrs(ctx, level, "registry: an abandoned restore returned, succeeding late, for an object deleted meanwhile; deleted from the engine again", attrs...)
	}
}

// deleteQuarantined deletes the quarantined object of a kind name names, if there is one:
// its stored manifest goes, and, for a feature whose manifest parses, the values stored
// for it are dropped. Callers hold mu.
func (r *Registry) deleteQuarantined(ctx context.Context, name string, kind manifest.Kind) (Key, bool, error) {
	fqn, err := r.eng.ResolveFQN(name)
	if err != nil {
		return Key{}, false, nil
	}
	key := Key{string(kind), fqn}
	if _, ok := r.quarantine[key]; !ok {
		return key, false, nil
	}
	var f *engine.Feature
	if kind == manifest.KindFeature {
		if ms, err := manifest.Parse(r.stored[key].manifest, "registry "+key.Kind+" "+fqn); err == nil && len(ms) == 1 && ms[0].Feature != nil && ms[0].FQN() == fqn {
			f = ms[0].Feature
		}
	}
	if err := r.unstore(ctx, key); err != nil {
		return key, true, fmt.Errorf("registry store: nothing was deleted: %w", err)
	}
	r.unquarantine(key)
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted a quarantined object", slog.String("kind", key.Kind), slog.String("fqn", fqn))
	if f != nil {
		if err := r.eng.State().Drop(context.WithoutCancel(ctx), f); err != nil {
			return key, true, fmt.Errorf("delete %s: the quarantined feature is deleted, but its stored values were not dropped (they expire with its staleness): %w", fqn, err)
		}
	}
	return key, true, nil
}
