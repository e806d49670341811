package server

import (
	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// ValueProto converts an engine value to the osprey.v1 Value the server answers with (nil
// for Null; a window with only the aggregations its feature declares), for in-process tools
// that print values as the API's clients do (osprey shell).
func ValueProto(v engine.Value) *ospreyv1.Value { return valueToProto(v) }

// CodeOf returns the code the server answers an error with (the table in errors.go), for
// in-process tools that report errors as the API's clients see them (osprey shell).
func CodeOf(err error) connect.Code { return codeOf(err) }
