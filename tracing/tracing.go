// Package tracing traces what an Osprey server does with OpenTelemetry: a span per RPC
// (Connect's otelconnect interceptor) and, under it, a span per middleware run, program run
// and State call of the engine (Tracer, an engine.Tracer), with the feature and the outcome
// as attributes. Spans are exported over OTLP, configured by the standard OTEL_*
// environment variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf or grpc, OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, …). Tracing is off
// unless configured: an endpoint, or OTEL_TRACES_EXPORTER=otlp, turns it on, and
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keeps it off. docs/observability.md
// describes the span tree.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/osprey-ml/osprey/engine"
)

// instrumentation names the tracer of the engine's spans.
const instrumentation = "github.com/osprey-ml/osprey/engine"

// Tracing is a configured tracer provider and what the server needs of it.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// Enabled reports whether the environment (getenv: os.Getenv) configures tracing.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// FromEnv returns the tracing the OTEL_* environment configures, or nil when it configures
// none (Enabled). service is the default service.name (OTEL_SERVICE_NAME overrides it).
func FromEnv(ctx context.Context, service, version string) (*Tracing, error) {
	if !Enabled(os.Getenv) {
		return nil, nil
	}
	if exp := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))); exp != "" && exp != "otlp" {
		return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER=%q: want otlp or none", exp)
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch strings.ToLower(strings.TrimSpace(protocol)) {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// resource.Environment (in Default) reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
	// they win over the defaults given here.
	if env, eerr := resource.New(ctx, resource.WithFromEnv()); eerr == nil {
		if merged, merr := resource.Merge(res, env); merr == nil {
			res = merged
		}
	}
	// The sampler comes from OTEL_TRACES_SAMPLER(_ARG), parent-based always-on by default.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return New(tp), nil
}

// New returns the tracing of a tracer provider of the caller's (an exporter of its own, a
// test's in-memory recorder).
func New(tp *sdktrace.TracerProvider) *Tracing {
	return &Tracing{tp: tp, tracer: tp.Tracer(instrumentation)}
}

// Interceptor returns the interceptor that starts a span per RPC (otelconnect), continuing
// a trace the caller propagates (W3C traceparent), for connect.WithInterceptors.
func (t *Tracing) Interceptor() (connect.Interceptor, error) {
	return otelconnect.NewInterceptor(otelconnect.WithTracerProvider(t.tp), otelconnect.WithoutMetrics(),
		otelconnect.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelconnect.WithTrustRemote())
}

// Tracer returns the engine.Tracer whose spans nest under the RPC's (engine.WithTracer).
func (t *Tracing) Tracer() engine.Tracer { return tracer{t.tracer} }

// Shutdown flushes the spans not exported yet and stops exporting, within ctx.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }

type tracer struct{ t trace.Tracer }

// Span names, by kind.
var spanPrefix = [...]string{engine.SpanMiddleware: "middleware ", engine.SpanProgram: "program ", engine.SpanState: "state "}

// Attribute keys of the engine's spans.
const (
	attrFeature = attribute.Key("osprey.feature")
	attrStep    = attribute.Key("osprey.step")
	attrOutcome = attribute.Key("osprey.outcome")
)

func (t tracer) Start(ctx context.Context, kind engine.SpanKind, fqn, name string) (context.Context, func(error)) {
	prefix := "step "
	if int(kind) < len(spanPrefix) && spanPrefix[kind] != "" {
		prefix = spanPrefix[kind]
	}
	attrs := []attribute.KeyValue{attrStep.String(name)}
	if fqn != "" {
		attrs = append(attrs, attrFeature.String(fqn))
	}
	spanName := prefix + name
	if kind == engine.SpanProgram {
		spanName = prefix + fqn
	}
	ctx, span := t.t.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(attrOutcome.String(outcome(err)))
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attrOutcome.String("ok"))
		}
		span.End()
	}
}

// outcome names a step's failure.
func outcome(err error) string {
	switch {
	case errors.Is(err, engine.ErrRejected):
		return "rejected"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}
