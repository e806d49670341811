package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/manifest"
)

// Actions reported by ApplyFeature.
const (
	actionCreated   = "created"
	actionUpdated   = "updated"
	actionUnchanged = "unchanged"
)

// manifestSource names ApplyFeature's manifest in error messages ("manifest: document 2
// (line 14): spec.staleness: …").
const manifestSource = "manifest"

// objectKey names a registry object.
type objectKey struct{ kind, fqn string }

// storedObject is what the Store holds for an object, as far as this server knows.
type storedObject struct {
	manifest []byte   // canonical manifest (manifest.Marshal)
	modules  []string // module references
}

// registry serialises the calls that change the set of applied objects and keeps track of
// what the Store holds. Its fields are guarded by mu.
type registry struct {
	mu     sync.Mutex
	store  Store // nil: nothing is persisted
	stored map[objectKey]storedObject
	// modules holds the bytes of the modules stored objects name, so that an object naming
	// a module by digest alone can be stored again. Only kept with a Store.
	modules map[string][]byte
	// quarantine holds the stored objects that did not restore (see restore.go); changes
	// are published to quarantineList, which ListFeatures reads without taking mu.
	quarantine     map[objectKey]*quarantined
	quarantineList atomic.Pointer[[]*ospreyv1.QuarantinedObject]
	// pending holds the objects whose restore was abandoned at its deadline and whose apply
	// has not returned yet: ApplyFeature refuses them until it has.
	pending map[objectKey]*quarantined
}

func newRegistry(store Store) *registry {
	return &registry{store: store, stored: map[objectKey]storedObject{}, modules: map[string][]byte{},
		quarantine: map[objectKey]*quarantined{}, pending: map[objectKey]*quarantined{}}
}

// forget drops the module bytes no stored object names. Callers hold mu.
func (r *registry) forgetUnusedModules() {
	used := map[string]bool{}
	for _, o := range r.stored {
		for _, ref := range o.modules {
			used[ref] = true
		}
	}
	maps.DeleteFunc(r.modules, func(ref string, _ []byte) bool { return !used[ref] })
}

// registryService implements osprey.v1.RegistryService. It is safe for concurrent use;
// ApplyFeature and DeleteFeature are serialised.
type registryService struct {
	ospreyv1connect.UnimplementedRegistryServiceHandler
	s *Server
}

// applyStep is one manifest document of an ApplyFeature on its way to being applied.
type applyStep struct {
	m         manifest.Manifest
	key       objectKey
	canonical []byte
	modules   map[string][]byte // every module the object names, by reference, when known
	action    string
	oldF      *engine.Feature
	oldDS     *engine.DataSource
}

// ApplyFeature applies manifests with the Wasm modules they name. The whole request is
// checked (parse, validation, modules) before anything is applied, and a failure while
// applying (a module that does not compile, a middleware that does not resolve, an
// incompatible change, the store) undoes what the request had applied: a request applies
// entirely or not at all. Data sources are applied before features. An object identical to
// the applied one is left alone ("unchanged"). A quarantined object applied successfully
// leaves the quarantine; one whose abandoned restore has not returned is refused with
// Unavailable.
func (rs *registryService) ApplyFeature(ctx context.Context, req *connect.Request[ospreyv1.ApplyFeatureRequest]) (*connect.Response[ospreyv1.ApplyFeatureResponse], error) {
	s := rs.s
	m := req.Msg
	if len(bytes.TrimSpace(m.GetManifest())) == 0 {
		return nil, invalid("manifest", "empty (want Feature and DataSource YAML documents)")
	}
	ms, err := manifest.Parse(m.GetManifest(), manifestSource)
	if err != nil {
		return nil, manifestError(err)
	}
	if len(ms) == 0 {
		return nil, invalid("manifest", "holds no Feature or DataSource document")
	}

	// First, under the registry's lock, the modules the request carries are added to the
	// Host and held; then they are compiled outside it, so that a slow compile holds up no
	// other apply; then the request is decided and applied under the lock.
	s.reg.mu.Lock()
	steps, release, err := s.stepsOf(ctx, req, ms)
	s.reg.mu.Unlock()
	defer release()
	if err != nil {
		return nil, err
	}
	if err := s.prepare(ctx, steps); err != nil {
		return nil, err
	}

	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	defer s.retainModules(ctx) // before release: what this request added and did not apply goes
	for _, st := range steps {
		if _, ok := s.reg.pending[st.key]; ok {
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf(
				"%s: the restore of %s %s when this server started overran its deadline and has not returned yet: retry later (deleting it works meanwhile)",
				st.m.Pos, st.key.kind, st.key.fqn))
		}
	}
	if err := s.decideActions(steps); err != nil {
		return nil, s.fail(ctx, req.Spec().Procedure, err, fieldNames{})
	}

	var undo []func(context.Context)
	rollback := func() {
		uctx := context.WithoutCancel(ctx)
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i](uctx)
		}
	}
	// Data sources first, so that the features of the same request find theirs.
	for _, kind := range []manifest.Kind{manifest.KindDataSource, manifest.KindFeature} {
		for _, st := range steps {
			if st.m.Kind != kind || st.action == actionUnchanged {
				continue
			}
			u, err := s.applyObject(ctx, st)
			if err != nil {
				rollback()
				return nil, applyError(st, err)
			}
			undo = append(undo, u)
		}
	}
	if err := s.persist(ctx, steps, &undo); err != nil {
		rollback()
		return nil, s.fail(ctx, req.Spec().Procedure, fmt.Errorf("nothing was applied: %w", err), fieldNames{})
	}

	// Applied, so no longer quarantined.
	for _, st := range steps {
		s.reg.unquarantine(st.key)
	}
	out := &ospreyv1.ApplyFeatureResponse{}
	for _, st := range steps {
		out.Applied = append(out.Applied, &ospreyv1.AppliedObject{Kind: st.key.kind, Fqn: st.key.fqn, Action: st.action})
		s.log.LogAttrs(ctx, slog.LevelInfo, "registry: applied", slog.String("kind", st.key.kind),
			slog.String("fqn", st.key.fqn), slog.String("action", st.action))
	}
	return connect.NewResponse(out), nil
}

// stepsOf turns the manifests of an ApplyFeature into steps: the modules they name are
// resolved and added to the Host, and held until release is called — also when it fails,
// so that release lets go of what it added. Callers hold s.reg.mu.
func (s *Server) stepsOf(ctx context.Context, req *connect.Request[ospreyv1.ApplyFeatureRequest], ms []manifest.Manifest) (steps []*applyStep, release func(), err error) {
	var releases []func()
	hold := func(ref string) {
		if s.host != nil {
			releases = append(releases, s.host.Hold(ref))
		}
	}
	defer func() {
		release = func() {
			for _, r := range releases {
				r()
			}
		}
	}()
	steps = make([]*applyStep, len(ms))
	for i, mf := range ms {
		st := &applyStep{m: mf, key: objectKey{string(mf.Kind), mf.FQN()}}
		if _, ok := s.reg.pending[st.key]; ok {
			return nil, nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf(
				"%s: the restore of %s %s when this server started overran its deadline and has not returned yet: retry later (deleting it works meanwhile)",
				mf.Pos, st.key.kind, st.key.fqn))
		}
		if err := s.resolveModules(st, req.Msg.GetModules(), hold); err != nil {
			return nil, nil, err
		}
		canonical, err := manifest.Marshal(st.m)
		if err != nil {
			return nil, nil, s.fail(ctx, req.Spec().Procedure, err, fieldNames{})
		}
		st.canonical = canonical
		steps[i] = st
	}
	return steps, nil, nil
}

// prepare compiles the Wasm modules of a request's features (Host.Prepare), outside the
// registry's lock.
func (s *Server) prepare(ctx context.Context, steps []*applyStep) error {
	if s.host == nil {
		return nil
	}
	for _, st := range steps {
		if st.m.Feature == nil {
			continue
		}
		if err := s.host.Prepare(ctx, st.m.Feature); err != nil {
			return applyError(st, err)
		}
	}
	return nil
}

// retainModules tells the Host which features are applied, so that it releases the modules
// no applied feature names (host.Host.Retain). Callers hold s.reg.mu, after every change.
func (s *Server) retainModules(ctx context.Context) {
	if s.host != nil {
		s.host.Retain(context.WithoutCancel(ctx), s.eng.Features())
	}
}

// manifestError reports a manifest that does not parse or validate: InvalidArgument, with
// one field violation per problem.
func manifestError(err error) *connect.Error {
	ce := connect.NewError(connect.CodeInvalidArgument, err)
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok && !isManifestError(err) {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	br := &errdetails.BadRequest{}
	for _, e := range errs {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: "manifest", Description: e.Error()})
	}
	if d, derr := connect.NewErrorDetail(br); derr == nil {
		ce.AddDetail(d)
	}
	return ce
}

func isManifestError(err error) bool {
	_, ok := err.(*manifest.Error)
	return ok
}

// resolveModules replaces the module paths a feature names by the digests of the modules
// the request carries under those paths (adding them to the Host), and collects the
// bytes of every module the object names for the Store.
func (s *Server) resolveModules(st *applyStep, provided map[string][]byte, hold func(ref string)) error {
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
	for _, r := range refs {
		name := *r.ptr
		if name == "" {
			continue
		}
		at := fmt.Sprintf("%s: %s", st.m.Pos, r.path)
		if s.host == nil {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
				"%s: names the Wasm module %q, but this server has no Wasm host: it applies sourceless features and native middlewares only", at, name))
		}
		field := "modules[" + strconv.Quote(name) + "]"
		b, ok := provided[name]
		switch {
		case ok && strings.HasPrefix(name, digestPrefix):
			if got := moduleRef(b); got != name {
				return invalid(field, "the bytes have digest %s, not the one they are sent under", got)
			}
		case ok:
		case strings.HasPrefix(name, digestPrefix):
			// A module the server should already have.
			hold(name)
			if b, ok = s.reg.modules[name]; !ok && s.reg.store != nil {
				return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
					"%s: module %s is not in this server's registry; send its bytes in %s", at, name, field))
			}
		default:
			return invalid(field, "missing: %s names it; send the module's bytes under that key", at)
		}
		if ok {
			hold(moduleRef(b)) // before the Host has it: no sweep may drop it in between
			digest, err := s.host.AddModule(b)
			if err != nil {
				ce := rpcError(fmt.Errorf("%s: %w", field, err), fieldNames{})
				return withField(ce, field, ce.Message())
			}
			*r.ptr = digest
			if s.reg.store != nil {
				if st.modules == nil {
					st.modules = map[string][]byte{}
				}
				st.modules[digest] = b
			}
		}
	}
	return nil
}

// decideActions compares each object with the applied one of the same name.
func (s *Server) decideActions(steps []*applyStep) error {
	features := map[string]*engine.Feature{}
	for _, f := range s.eng.Features() {
		features[f.FQN] = f
	}
	sources := map[string]*engine.DataSource{}
	for _, ds := range s.eng.DataSources() {
		sources[ds.FQN] = ds
	}
	for _, st := range steps {
		var old []byte
		var err error
		switch {
		case st.m.Feature != nil:
			if f := features[st.key.fqn]; f != nil {
				st.oldF = f.Clone()
				old, err = manifest.Feature(f)
			}
		default:
			if ds := sources[st.key.fqn]; ds != nil {
				st.oldDS = ds.Clone()
				old, err = manifest.DataSource(ds)
			}
		}
		if err != nil {
			return err
		}
		switch {
		case st.oldF == nil && st.oldDS == nil:
			st.action = actionCreated
		case bytes.Equal(old, st.canonical):
			st.action = actionUnchanged
		default:
			st.action = actionUpdated
		}
	}
	return nil
}

// applyObject applies one object and returns how to undo it.
func (s *Server) applyObject(ctx context.Context, st *applyStep) (func(context.Context), error) {
	fqn := st.key.fqn
	if ds := st.m.DataSource; ds != nil {
		if err := s.eng.ApplyDataSource(ctx, ds); err != nil {
			return nil, err
		}
		old := st.oldDS
		return func(ctx context.Context) {
			var err error
			if old != nil {
				err = s.eng.ApplyDataSource(ctx, old)
			} else {
				err = s.eng.DeleteDataSource(ctx, fqn)
			}
			s.logUndo(ctx, "DataSource", fqn, err)
		}, nil
	}
	if err := s.eng.Apply(ctx, st.m.Feature); err != nil {
		return nil, err
	}
	old := st.oldF
	return func(ctx context.Context) {
		var err error
		if old != nil {
			err = s.eng.Apply(ctx, old)
		} else {
			err = s.eng.Delete(ctx, fqn)
		}
		s.logUndo(ctx, "Feature", fqn, err)
	}, nil
}

func (s *Server) logUndo(ctx context.Context, kind, fqn string, err error) {
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "registry: could not undo a partly applied request",
			slog.String("kind", kind), slog.String("fqn", fqn), slog.Any("error", err))
	}
}

// applyError reports an object the engine refused. Its code follows the cause, except that
// a missing data source is FailedPrecondition (apply it first) and a cause the engine does
// not classify (an unknown middleware, a module that fails to start) is InvalidArgument:
// the manifest names something this server cannot apply.
func applyError(st *applyStep, err error) *connect.Error {
	err = fmt.Errorf("%s: %w", st.m.Pos, err)
	code := codeOf(err)
	switch code {
	case connect.CodeNotFound:
		code = connect.CodeFailedPrecondition
	case connect.CodeInternal, connect.CodeUnknown:
		code = connect.CodeInvalidArgument
	}
	ce := connect.NewError(code, err)
	if code == connect.CodeInvalidArgument {
		return withField(ce, "manifest", err.Error())
	}
	return ce
}

// persist saves the objects of a request to the Store (those whose stored manifest
// differs), adding to undo how to restore the Store's previous content.
func (s *Server) persist(ctx context.Context, steps []*applyStep, undo *[]func(context.Context)) error {
	r := s.reg
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
		if err := r.store.Save(sctx, st.key.kind, st.key.fqn, st.canonical, mods); err != nil {
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
				err = r.store.Save(ctx, key.kind, key.fqn, prev.manifest, prevModules)
				r.stored[key] = prev
			} else {
				err = r.store.Delete(ctx, key.kind, key.fqn)
				delete(r.stored, key)
			}
			if err != nil {
				s.log.LogAttrs(ctx, slog.LevelError, "registry: could not restore the store after a failed request",
					slog.String("kind", key.kind), slog.String("fqn", key.fqn), slog.Any("error", err))
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

// DeleteFeature removes an applied feature (and its stored manifest). When no feature has
// the name but a data source does, it removes the data source, which no feature may use. A
// quarantined object of the name (a feature first, then a data source) is not applied, so
// deleting it removes its stored manifest, drops the values stored for it when its
// manifest still parses, and takes it off the quarantine list.
func (rs *registryService) DeleteFeature(ctx context.Context, req *connect.Request[ospreyv1.DeleteFeatureRequest]) (*connect.Response[ospreyv1.DeleteFeatureResponse], error) {
	s := rs.s
	proc := req.Spec().Procedure
	name := req.Msg.GetFqn()
	names := fieldNames{selector: "fqn"}
	if _, err := engine.ParseFQN(name, engine.DefaultNamespace); err != nil {
		return nil, s.fail(ctx, proc, err, names)
	}
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	defer s.retainModules(ctx)
	f, err := s.eng.FeatureDescriptor(ctx, name)
	if errors.Is(err, engine.ErrFeatureNotFound) {
		done, derr := s.deleteQuarantined(ctx, name, manifest.KindFeature)
		if !done && derr == nil {
			done, derr = s.deleteDataSource(ctx, name)
		}
		if !done && derr == nil {
			done, derr = s.deleteQuarantined(ctx, name, manifest.KindDataSource)
		}
		if done || derr != nil {
			if derr != nil {
				return nil, s.fail(ctx, proc, derr, names)
			}
			return connect.NewResponse(&ospreyv1.DeleteFeatureResponse{}), nil
		}
	}
	if err != nil {
		return nil, s.fail(ctx, proc, err, names)
	}
	// The stored manifest goes first: if that fails nothing has changed. The engine's delete
	// then drops the feature's values, which cannot be undone; its only failure left is that
	// drop, after the feature is gone (the error says so).
	if err := s.unstore(ctx, objectKey{string(manifest.KindFeature), f.FQN}); err != nil {
		return nil, s.fail(ctx, proc, fmt.Errorf("nothing was deleted: %w", err), names)
	}
	if err := s.eng.Delete(context.WithoutCancel(ctx), f.FQN); err != nil {
		return nil, s.fail(ctx, proc, err, names)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted", slog.String("kind", "Feature"), slog.String("fqn", f.FQN))
	return connect.NewResponse(&ospreyv1.DeleteFeatureResponse{}), nil
}

// deleteDataSource deletes the data source name names, if one is applied. The engine does
// not say which default namespace it resolves bare names in, so a bare name is looked up in
// engine.DefaultNamespace. Callers hold s.reg.mu.
func (s *Server) deleteDataSource(ctx context.Context, name string) (bool, error) {
	fqn, err := engine.ParseFQN(name, engine.DefaultNamespace)
	if err != nil {
		return false, nil
	}
	var old *engine.DataSource
	for _, ds := range s.eng.DataSources() {
		if ds.FQN == fqn {
			old = ds.Clone()
		}
	}
	if old == nil {
		return false, nil
	}
	if err := s.eng.DeleteDataSource(ctx, fqn); err != nil {
		return true, err
	}
	if err := s.unstore(ctx, objectKey{string(manifest.KindDataSource), fqn}); err != nil {
		if aerr := s.eng.ApplyDataSource(context.WithoutCancel(ctx), old); aerr != nil {
			s.logUndo(ctx, "DataSource", fqn, aerr)
		}
		return true, fmt.Errorf("nothing was deleted: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted", slog.String("kind", "DataSource"), slog.String("fqn", fqn))
	return true, nil
}

// unstore removes an object from the Store. Callers hold s.reg.mu.
func (s *Server) unstore(ctx context.Context, key objectKey) error {
	r := s.reg
	if r.store == nil {
		return nil
	}
	if err := r.store.Delete(context.WithoutCancel(ctx), key.kind, key.fqn); err != nil {
		return err
	}
	delete(r.stored, key)
	r.forgetUnusedModules()
	return nil
}

// ListFeatures lists the applied features and data sources, and the quarantined objects,
// optionally of one namespace.
func (rs *registryService) ListFeatures(ctx context.Context, req *connect.Request[ospreyv1.ListFeaturesRequest]) (*connect.Response[ospreyv1.ListFeaturesResponse], error) {
	ns := strings.ToLower(strings.TrimSpace(req.Msg.GetNamespace()))
	if ns != "" {
		if err := engine.ValidName(ns); err != nil {
			return nil, invalid("namespace", "%v", err)
		}
	}
	in := func(fqn string) bool { return ns == "" || strings.HasPrefix(fqn, ns+".") }
	out := &ospreyv1.ListFeaturesResponse{}
	for _, f := range rs.s.eng.Features() {
		if in(f.FQN) {
			out.Features = append(out.Features, featureToProto(f))
		}
	}
	for _, ds := range rs.s.eng.DataSources() {
		if in(ds.FQN) {
			out.DataSources = append(out.DataSources, dataSourceToProto(ds))
		}
	}
	for _, q := range rs.s.reg.quarantined() {
		if in(q.GetFqn()) {
			out.Quarantined = append(out.Quarantined, proto.CloneOf(q))
		}
	}
	return connect.NewResponse(out), nil
}

// DryRun runs a feature's program on a sample row (or for keys) and its preSet middlewares,
// and returns what would be written. Nothing is written. A row the program fails on is
// InvalidArgument (see errors.go).
func (rs *registryService) DryRun(ctx context.Context, req *connect.Request[ospreyv1.DryRunRequest]) (*connect.Response[ospreyv1.DryRunResponse], error) {
	s := rs.s
	m := req.Msg
	var row engine.Row
	switch {
	case m.GetRow() != nil && m.GetTypedRow() != nil:
		return nil, invalid("typed_row", "send row or typed_row, not both")
	case m.GetTypedRow() != nil:
		var err error
		if row, err = rowFromTyped("typed_row", m.GetTypedRow()); err != nil {
			return nil, rpcError(err, fieldNames{})
		}
	case m.GetRow() != nil:
		var err error
		if row, err = rowFromProto("row", m.GetRow()); err != nil {
			return nil, rpcError(err, fieldNames{})
		}
	}
	ts, err := timeFromProto(m.GetTimestamp())
	if err != nil {
		return nil, invalid("timestamp", "%v", err)
	}
	res, err := s.eng.DryRun(ctx, m.GetFqn(), engine.Keys(m.GetKeys()), row, ts)
	if err != nil {
		if row != nil && rowFault(err) {
			// The row is the request, as in Ingest: the caller's to fix, not the server's
			// fault, so not logged at ERROR.
			s.log.LogAttrs(ctx, slog.LevelDebug, "dry run: the program failed on the row", slog.String("fqn", m.GetFqn()), slog.Any("error", err))
			return nil, invalid("row", "%v", err)
		}
		return nil, s.fail(ctx, req.Spec().Procedure, err, fieldNames{selector: "fqn", keys: "keys", value: "row"})
	}
	return connect.NewResponse(&ospreyv1.DryRunResponse{
		Fqn:       res.FQN,
		Value:     valueToProto(res.Value),
		Keys:      res.Keys,
		Timestamp: timeToProto(res.Timestamp),
		Writes:    !res.Value.IsNull(),
	}), nil
}

// rowFault reports whether a DryRun failed on its row: the program returned an error
// (host.ErrGuestFailed), trapped on it (host.ErrTrap) or returned a value of the wrong type
// (engine.ErrTypeMismatch) — and not because time ran out or the client went away.
func rowFault(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	return errors.Is(err, host.ErrGuestFailed) || errors.Is(err, host.ErrTrap) || errors.Is(err, engine.ErrTypeMismatch)
}
