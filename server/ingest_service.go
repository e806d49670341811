package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// ingestService implements osprey.v1.IngestService (ingestHandler serves it). It is safe
// for concurrent use.
type ingestService struct {
	s *Server
}

// Ingest runs the programs of the features a data source feeds on each row and writes what
// they computed; when any row fails, nothing is written. A client that goes away (or whose
// deadline passes) stops the work between rows: the call fails with Canceled (or
// DeadlineExceeded), and, when it stopped before the writes began, nothing is written. Its
// request is an ingestRequest: over the binary codec its typed rows arrive decoded.
func (is *ingestService) Ingest(ctx context.Context, req *connect.Request[ingestRequest]) (*connect.Response[ospreyv1.IngestResponse], error) {
	s := is.s
	m := req.Msg
	typed := len(m.GetTypedRows())
	if m.decoded {
		typed = len(m.typed)
	}
	if len(m.GetRows()) > 0 && typed > 0 {
		return nil, invalid("typed_rows", "send rows or typed_rows, not both")
	}
	var rows []engine.Row
	switch {
	case m.decoded && m.typedErr != nil:
		return nil, rpcError(m.typedErr, fieldNames{})
	case m.decoded && typed > 0:
		rows = m.typed
	default:
		n := max(len(m.GetRows()), typed)
		rows = make([]engine.Row, n)
		for i := range n {
			if err := ctx.Err(); err != nil { // the client went away: convert no more
				return nil, s.fail(ctx, req.Spec().Procedure, err, fieldNames{})
			}
			var row engine.Row
			var err error
			if typed > 0 {
				row, err = rowFromTyped(fmt.Sprintf("typed_rows[%d]", i), m.GetTypedRows()[i])
			} else {
				row, err = rowFromProto(fmt.Sprintf("rows[%d]", i), m.GetRows()[i])
			}
			if err != nil {
				return nil, rpcError(err, fieldNames{})
			}
			rows[i] = row
		}
	}
	res, err := s.eng.Ingest(ctx, m.GetSource(), rows)
	if err != nil {
		if ce := rowErrors(err); ce != nil {
			return nil, ce
		}
		return nil, s.fail(ctx, req.Spec().Procedure, err, fieldNames{selector: "source"})
	}
	return connect.NewResponse(&ospreyv1.IngestResponse{Rows: int64(res.Rows), Written: int64(res.Written), Skipped: int64(res.Skipped), Superseded: int64(res.Superseded)}), nil
}

// ingestHandler serves IngestService: its one procedure, Ingest, with ingestCodec for the
// binary Protobuf codec.
func ingestHandler(is *ingestService, opts ...connect.HandlerOption) (string, http.Handler) {
	method := ospreyv1.File_osprey_v1_ingest_proto.Services().ByName("IngestService").Methods().ByName("Ingest")
	h := connect.NewUnaryHandler(ospreyv1connect.IngestServiceIngestProcedure, is.Ingest,
		connect.WithSchema(method), connect.WithHandlerOptions(opts...), connect.WithCodec(ingestCodec{}))
	return ospreyv1connect.IngestServiceIngestProcedure, h
}

// rowErrors reports an Ingest that failed on some rows (and so wrote nothing):
// InvalidArgument, with a field violation rows[i] per failure — unless time ran out, which
// is DeadlineExceeded, or the client went away, which is Canceled. It returns nil when err
// holds no row failure.
func rowErrors(err error) *connect.Error {
	var failures []*engine.IngestError
	collectIngestErrors(err, &failures)
	if len(failures) == 0 {
		return nil
	}
	code := connect.CodeInvalidArgument
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	}
	ce := connect.NewError(code, err)
	br := &errdetails.BadRequest{}
	for _, f := range failures {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field: fmt.Sprintf("rows[%d]", f.Row), Description: f.FQN + ": " + f.Err.Error()})
	}
	if d, derr := connect.NewErrorDetail(br); derr == nil {
		ce.AddDetail(d)
	}
	return ce
}

// collectIngestErrors gathers the *engine.IngestError in an error tree.
func collectIngestErrors(err error, out *[]*engine.IngestError) {
	switch e := err.(type) {
	case nil:
		return
	case *engine.IngestError:
		*out = append(*out, e)
		return
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			collectIngestErrors(x, out)
		}
	case interface{ Unwrap() error }:
		collectIngestErrors(e.Unwrap(), out)
	}
}
