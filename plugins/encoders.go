package plugins

import (
	"fmt"
	"maps"

	"github.com/osprey-ml/osprey/engine"
)

// EncoderFactory builds an encoding (the `[name]` of a selector) from the operator's
// configuration of it. It returns an error for a bad configuration; an encoding that cannot
// work without configuration it lacks (a key) should still be built, and fail when used,
// naming what to configure.
type EncoderFactory func(cfg Config) (engine.Encoder, error)

var encoders = newRegistry[EncoderFactory]("encoding")

// RegisterEncoder registers an encoding under name. It panics like RegisterState.
func RegisterEncoder(name string, f EncoderFactory) {
	if f == nil {
		panic(fmt.Sprintf("plugins: RegisterEncoder(%q) with a nil factory", name))
	}
	encoders.register(name, f)
}

// EncoderNames returns the names of the registered encodings, sorted.
func EncoderNames() []string { return encoders.names() }

// NewEncoders builds every registered encoding, each with its section of configs (by
// name; a missing section is an empty Config), and returns a resolver for the engine
// (engine.WithEncoderResolver). A section naming no registered encoding is an error.
func NewEncoders(configs map[string]Config) (engine.EncoderResolver, error) {
	for name := range configs {
		if _, err := encoders.lookup(name); err != nil {
			return nil, fmt.Errorf("encoder config: %w", err)
		}
	}
	built := map[string]engine.Encoder{}
	for _, name := range encoders.names() {
		f, _ := encoders.lookup(name)
		enc, err := f(configs[name])
		if err != nil {
			return nil, fmt.Errorf("plugins: encoding %q: %w", name, err)
		}
		built[name] = enc
	}
	return encoderSet(maps.Clone(built)), nil
}

// encoderSet resolves encodings built by NewEncoders.
type encoderSet map[string]engine.Encoder

func (s encoderSet) Encoder(name string) (engine.Encoder, error) {
	if enc, ok := s[name]; ok {
		return enc, nil
	}
	_, err := encoders.lookup(name) // the error lists the registered names
	if err == nil {
		err = fmt.Errorf("plugins: encoding %q: %w", name, ErrNotRegistered)
	}
	return nil, err
}
