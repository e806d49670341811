package abi

import (
	"slices"
	"strings"
)

// ConfigureCall is the input of osprey_configure (ABI.md §4.4, ABI 1.1): the configuration
// of the object an instance is about to serve.
type ConfigureCall struct {
	// Config holds the object's configuration, sorted by name; names are unique.
	Config []KV
}

// SortedConfig returns the pairs of m sorted by name: the order a ConfigureCall carries.
func SortedConfig(m map[string]string) []KV {
	kvs := make([]KV, 0, len(m))
	for k, v := range m {
		kvs = append(kvs, KV{Name: k, Value: v})
	}
	slices.SortFunc(kvs, func(a, b KV) int { return strings.Compare(a.Name, b.Name) })
	return kvs
}

// AppendConfigureCall appends a configure call. c.Config must be sorted by name with unique
// names (SortedConfig); the encoding is otherwise not canonical and decoders reject it.
func AppendConfigureCall(b []byte, c *ConfigureCall) []byte {
	return AppendKeys(append(b, CallConfigure), c.Config)
}

// DecodeConfigureCall decodes a whole configure call, rejecting names that are not in
// strictly increasing byte order (which also makes them unique).
func DecodeConfigureCall(b []byte) (ConfigureCall, error) {
	d := NewDecoder(b)
	var c ConfigureCall
	if k := d.U8(); k != CallConfigure && d.err == nil {
		d.fail(errorf("call kind %d, want %d (configure)", k, CallConfigure))
	}
	c.Config = d.Config()
	return c, d.Done()
}

// Config decodes the pairs of a configure call: a Keys encoding (§5.4) whose names are in
// strictly increasing byte order.
func (d *Decoder) Config() []KV {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	kvs := make([]KV, 0, min(n, prealloc))
	for ; n > 0 && d.err == nil; n-- {
		kv := KV{Name: d.String(), Value: d.String()}
		if d.err != nil {
			break
		}
		if i := len(kvs); i > 0 && kv.Name <= kvs[i-1].Name {
			if kv.Name == kvs[i-1].Name {
				d.fail(errorf("duplicate config name %q", kv.Name))
			} else {
				d.fail(errorf("config name %q after %q: names must be in increasing byte order", kv.Name, kvs[i-1].Name))
			}
			break
		}
		kvs = append(kvs, kv)
	}
	if d.err != nil {
		return nil
	}
	return kvs
}
