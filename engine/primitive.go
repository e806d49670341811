package engine

import "fmt"

// Primitive is the type of a feature's values: one of five scalars or a list of one of them.
type Primitive uint8

// The ten primitives of the feature spec. PrimitiveUnknown is the zero value and never a
// valid feature type.
const (
	PrimitiveUnknown Primitive = iota
	PrimitiveInt
	PrimitiveFloat
	PrimitiveString
	PrimitiveBool
	PrimitiveTimestamp
	PrimitiveIntList
	PrimitiveFloatList
	PrimitiveStringList
	PrimitiveBoolList
	PrimitiveTimestampList
)

var primitiveNames = [...]string{
	PrimitiveUnknown:       "unknown",
	PrimitiveInt:           "int",
	PrimitiveFloat:         "float",
	PrimitiveString:        "string",
	PrimitiveBool:          "bool",
	PrimitiveTimestamp:     "timestamp",
	PrimitiveIntList:       "[]int",
	PrimitiveFloatList:     "[]float",
	PrimitiveStringList:    "[]string",
	PrimitiveBoolList:      "[]bool",
	PrimitiveTimestampList: "[]timestamp",
}

// String returns the manifest spelling: "int", "[]float", ….
func (p Primitive) String() string {
	if int(p) < len(primitiveNames) {
		return primitiveNames[p]
	}
	return fmt.Sprintf("primitive(%d)", p)
}

// ParsePrimitive parses the manifest spelling of a primitive. It also accepts the aliases
// "integer", "double", "boolean", "text", "time" and "list<…>"-free plural forms such as
// "[]integer".
func ParsePrimitive(s string) (Primitive, error) {
	list := false
	if len(s) > 2 && s[:2] == "[]" {
		list, s = true, s[2:]
	}
	var p Primitive
	switch s {
	case "int", "integer", "int64":
		p = PrimitiveInt
	case "float", "double", "float64":
		p = PrimitiveFloat
	case "string", "text":
		p = PrimitiveString
	case "bool", "boolean":
		p = PrimitiveBool
	case "timestamp", "time", "datetime":
		p = PrimitiveTimestamp
	default:
		return PrimitiveUnknown, fmt.Errorf("unknown primitive %q (want int, float, string, bool, timestamp or a list of one, e.g. []int)", s)
	}
	if list {
		p = p.List()
	}
	return p, nil
}

// Valid reports whether p is one of the ten primitives.
func (p Primitive) Valid() bool { return p >= PrimitiveInt && p <= PrimitiveTimestampList }

// IsList reports whether p is a list primitive.
func (p Primitive) IsList() bool { return p >= PrimitiveIntList && p <= PrimitiveTimestampList }

// IsNumeric reports whether p is int or float.
func (p Primitive) IsNumeric() bool { return p == PrimitiveInt || p == PrimitiveFloat }

// Elem returns the element primitive of a list, or p itself for a scalar.
func (p Primitive) Elem() Primitive {
	if p.IsList() {
		return p - (PrimitiveIntList - PrimitiveInt)
	}
	return p
}

// List returns the list primitive of a scalar, or p itself for a list.
func (p Primitive) List() Primitive {
	if p >= PrimitiveInt && p <= PrimitiveTimestamp {
		return p + (PrimitiveIntList - PrimitiveInt)
	}
	return p
}
