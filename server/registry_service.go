package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/registry"
)

// manifestSource names ApplyFeature's manifest in error messages ("manifest: document 2
// (line 14): spec.staleness: …").
const manifestSource = "manifest"

// registryService implements osprey.v1.RegistryService: a thin adapter over the
// registry.Registry (package registry), which owns applying, deleting, listing, restore and
// module lifecycle. It converts requests and responses and maps errors (registryError).
type registryService struct {
	ospreyv1connect.UnimplementedRegistryServiceHandler
	s *Server
}

// ApplyFeature parses the manifest and applies its objects with the Wasm modules the request
// carries, all or nothing (registry.Registry.Apply); with dry_run it checks everything and
// changes nothing. The response reports, per document in manifest order, what was (or
// would be) created, updated or left unchanged.
func (rs *registryService) ApplyFeature(ctx context.Context, req *connect.Request[ospreyv1.ApplyFeatureRequest]) (*connect.Response[ospreyv1.ApplyFeatureResponse], error) {
	s := rs.s
	m := req.Msg
	if len(bytes.TrimSpace(m.GetManifest())) == 0 {
		return nil, invalid("manifest", "empty (want Feature, DataSource, Plugin and Egress YAML documents)")
	}
	ms, err := manifest.Parse(m.GetManifest(), manifestSource)
	if err != nil {
		return nil, manifestError(err)
	}
	if len(ms) == 0 {
		return nil, invalid("manifest", "holds no Feature, DataSource, Plugin or Egress document")
	}
	applied, err := s.reg.Apply(ctx, ms, m.GetModules(), registry.ApplyOptions{DryRun: m.GetDryRun()})
	if err != nil {
		return nil, s.registryFail(ctx, req.Spec().Procedure, err, fieldNames{})
	}
	out := &ospreyv1.ApplyFeatureResponse{Applied: make([]*ospreyv1.AppliedObject, len(applied))}
	for i, a := range applied {
		out.Applied[i] = &ospreyv1.AppliedObject{Kind: a.Kind, Fqn: a.FQN, Action: string(a.Action)}
	}
	return connect.NewResponse(out), nil
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

// DeleteFeature removes an applied feature, or else a quarantined feature, an applied data
// source no feature uses, a quarantined data source, an applied plugin no feature names, a
// quarantined plugin, an applied egress or a quarantined egress of the name
// (registry.Registry.Delete).
func (rs *registryService) DeleteFeature(ctx context.Context, req *connect.Request[ospreyv1.DeleteFeatureRequest]) (*connect.Response[ospreyv1.DeleteFeatureResponse], error) {
	if _, err := rs.s.reg.Delete(ctx, req.Msg.GetFqn()); err != nil {
		return nil, rs.s.registryFail(ctx, req.Spec().Procedure, err, fieldNames{selector: "fqn"})
	}
	return connect.NewResponse(&ospreyv1.DeleteFeatureResponse{}), nil
}

// ListFeatures lists the applied features, data sources and plugins, and the quarantined
// objects (egresses among them), optionally of one namespace. Applied egresses are not
// listed: the API has no message for them yet.
func (rs *registryService) ListFeatures(ctx context.Context, req *connect.Request[ospreyv1.ListFeaturesRequest]) (*connect.Response[ospreyv1.ListFeaturesResponse], error) {
	l, err := rs.s.reg.List(req.Msg.GetNamespace())
	if err != nil {
		return nil, rs.s.registryFail(ctx, req.Spec().Procedure, err, fieldNames{})
	}
	out := &ospreyv1.ListFeaturesResponse{}
	for _, f := range l.Features {
		out.Features = append(out.Features, featureToProto(f))
	}
	for _, ds := range l.DataSources {
		out.DataSources = append(out.DataSources, dataSourceToProto(ds))
	}
	for _, p := range l.Plugins {
		out.Plugins = append(out.Plugins, pluginToProto(p))
	}
	for _, eg := range l.Egresses {
		out.Egresses = append(out.Egresses, egressToProto(eg))
	}
	for _, q := range l.Quarantined {
		out.Quarantined = append(out.Quarantined, &ospreyv1.QuarantinedObject{Kind: q.Kind, Fqn: q.FQN, Error: q.Err, Since: timeToProto(q.Since)})
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
	out := &ospreyv1.DryRunResponse{
		Fqn:       res.FQN,
		Value:     valueToProto(res.Value),
		Keys:      res.Keys,
		Timestamp: timeToProto(res.Timestamp),
		Writes:    !res.Value.IsNull(),
	}
	for _, c := range res.Storage {
		out.Storage = append(out.Storage, &ospreyv1.StorageChange{Name: c.Name, Value: valueToProto(c.Value), Expires: timeToProto(c.Expires)})
	}
	for i := range res.Sends {
		out.Sends = append(out.Sends, sentToProto(&res.Sends[i]))
	}
	out.Cancels = res.Cancels
	return connect.NewResponse(out), nil
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

// CallPlugin runs a function of an applied plugin on the request's input.
func (rs *registryService) CallPlugin(ctx context.Context, req *connect.Request[ospreyv1.CallPluginRequest]) (*connect.Response[ospreyv1.CallPluginResponse], error) {
	s := rs.s
	if s.plugins == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server has no plugin host"))
	}
	m := req.Msg
	fqn, err := s.eng.ResolveFQN(m.GetPlugin())
	if err != nil {
		return nil, invalid("plugin", "%v", err)
	}
	if m.GetFunction() == "" {
		return nil, invalid("function", "empty (a function the plugin declares)")
	}
	out, err := s.plugins.Call(ctx, fqn, m.GetFunction(), m.GetInput())
	if err != nil {
		return nil, rpcError(err, fieldNames{})
	}
	return connect.NewResponse(&ospreyv1.CallPluginResponse{Output: out}), nil
}
