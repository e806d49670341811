package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	addr     string
	token    string
	output   string
	protocol string
	timeout  time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", envOr("OSPREY_ADDR", "http://127.0.0.1:8080"), "the host's address (env OSPREY_ADDR)")
	fs.StringVar(&c.token, "token", os.Getenv("OSPREY_TOKEN"), "bearer token (env OSPREY_TOKEN)")
	fs.StringVar(&c.output, "output", "text", "output format: text or json")
	fs.StringVar(&c.protocol, "protocol", "connect", "protocol: connect, grpc or grpcweb")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long a call may take")
}

// clients are the generated clients with the chosen protocol and token.
type clients struct {
	engine   ospreyv1connect.EngineServiceClient
	registry ospreyv1connect.RegistryServiceClient
	ingest   ospreyv1connect.IngestServiceClient
	flags    *clientFlags
}

func (c *clientFlags) dial() (*clients, error) {
	if c.output != "text" && c.output != "json" {
		return nil, fmt.Errorf("--output %q: want text or json", c.output)
	}
	addr := c.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	var opts []connect.ClientOption
	switch c.protocol {
	case "connect":
	case "grpc":
		opts = append(opts, connect.WithGRPC())
	case "grpcweb", "grpc-web":
		opts = append(opts, connect.WithGRPCWeb())
	default:
		return nil, fmt.Errorf("--protocol %q: want connect, grpc or grpcweb", c.protocol)
	}
	if c.token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(c.token)))
	}
	hc := h2cClient()
	if c.protocol == "grpc" {
		hc = h2cOnlyClient() // gRPC needs HTTP/2; net/http speaks h2c only with HTTP/1 off
	}
	return &clients{
		engine:   ospreyv1connect.NewEngineServiceClient(hc, addr, opts...),
		registry: ospreyv1connect.NewRegistryServiceClient(hc, addr, opts...),
		ingest:   ospreyv1connect.NewIngestServiceClient(hc, addr, opts...),
		flags:    c,
	}, nil
}

// h2cOnlyClient speaks HTTP/2 without TLS (prior knowledge), for gRPC.
func h2cOnlyClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols, MaxIdleConnsPerHost: 256}}
}

// h2cClient speaks HTTP/1.1 (Connect and gRPC-Web; net/http prefers it when both are on).
func h2cClient() *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols, MaxIdleConnsPerHost: 256}}
}

// bearer adds an Authorization header to every call.
func bearer(token string) connect.Interceptor {
	return authInterceptor{header: "Bearer " + token}
}

type authInterceptor struct{ header string }

func (a authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", a.header)
		return next(ctx, req)
	}
}

func (a authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", a.header)
		return conn
	}
}

func (a authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// print writes a response: as protojson with --output json, else with text.
func (c *clients) print(w io.Writer, msg proto.Message, text func()) error {
	if c.flags.output == "json" {
		b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: false}.Marshal(msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	text()
	return nil
}

// serverError turns a Connect error into the server's message with its code.
func serverError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %s", ce.Code(), ce.Message())
	}
	return err
}

// parseClientArgs parses a command's flags; flags may come before or after the positional
// arguments, and a negative number (-5, -0.5) is a value, not a flag.
func parseClientArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if len(args) > 0 && isNumber(args[0]) {
			pos = append(pos, args[0])
			args = args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// formatRow renders a row of API values for people: {name=value …} in name order.
func formatRow(row map[string]*ospreyv1.Value) string {
	parts := make([]string, 0, len(row))
	for _, name := range slices.Sorted(maps.Keys(row)) {
		parts = append(parts, name+"="+formatValue(row[name]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// formatValue renders an API value for people.
func formatValue(v *ospreyv1.Value) string {
	if v == nil {
		return "absent"
	}
	switch k := v.Kind.(type) {
	case *ospreyv1.Value_IntValue:
		return fmt.Sprint(k.IntValue)
	case *ospreyv1.Value_FloatValue:
		return fmt.Sprint(k.FloatValue)
	case *ospreyv1.Value_StringValue:
		return fmt.Sprintf("%q", k.StringValue)
	case *ospreyv1.Value_BoolValue:
		return fmt.Sprint(k.BoolValue)
	case *ospreyv1.Value_TimestampValue:
		return k.TimestampValue.AsTime().Format(time.RFC3339Nano)
	case *ospreyv1.Value_IntList:
		return fmt.Sprint(k.IntList.GetValues())
	case *ospreyv1.Value_FloatList:
		return fmt.Sprint(k.FloatList.GetValues())
	case *ospreyv1.Value_StringList:
		return fmt.Sprintf("%q", k.StringList.GetValues())
	case *ospreyv1.Value_BoolList:
		return fmt.Sprint(k.BoolList.GetValues())
	case *ospreyv1.Value_TimestampList:
		var parts []string
		for _, t := range k.TimestampList.GetValues() {
			parts = append(parts, t.AsTime().Format(time.RFC3339Nano))
		}
		return "[" + strings.Join(parts, " ") + "]"
	case *ospreyv1.Value_Window:
		w := k.Window
		var parts []string
		add := func(name string, has bool, x float64) {
			if has {
				parts = append(parts, fmt.Sprintf("%s=%g", name, x))
			}
		}
		add("sum", w.Sum != nil, w.GetSum())
		add("count", w.Count != nil, w.GetCount())
		add("min", w.Min != nil, w.GetMin())
		add("max", w.Max != nil, w.GetMax())
		add("avg", w.Avg != nil, w.GetAvg())
		return "{" + strings.Join(parts, " ") + "}"
	}
	return "null"
}

// jsonValue decodes a command-line value as JSON (1.5, "x", [1,2], true) or, failing
// that, takes it as a string.
//
// A value travels as a google.protobuf.Value, whose numbers are doubles: an integer beyond
// ±2^53 would be rounded, so it is sent as its decimal string, which the server converts
// exactly for an int feature.
func jsonValue(s string) (*structpb.Value, error) {
	var x any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil || dec.More() {
		x = s
	}
	v, err := structpb.NewValue(exactNumbers(x))
	if err != nil {
		return nil, fmt.Errorf("value %q: %w", s, err)
	}
	return v, nil
}

// exactNumbers replaces the json.Numbers of a decoded value: an integer literal beyond ±2^53
// by its string (exact), any other number by its float64.
func exactNumbers(x any) any {
	switch v := x.(type) {
	case json.Number:
		n := string(v)
		if !strings.ContainsAny(n, ".eE") {
			if i, err := v.Int64(); err != nil || i > 1<<53 || i < -(1<<53) {
				return n
			}
		}
		f, err := v.Float64()
		if err != nil {
			return n
		}
		return f
	case []any:
		for i := range v {
			v[i] = exactNumbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = exactNumbers(v[k])
		}
	}
	return x
}

func timestampFlag(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fmt.Errorf("--at %q: want RFC 3339, e.g. 2026-11-23T12:00:00Z", s)
	}
	return timestamppb.New(t), nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}
