package engine

// Encoder transforms a value on its way out, for selectors that name an [encoding]. It must
// be safe for concurrent use.
type Encoder func(Value) (Value, error)

// EncoderResolver finds an encoding by name.
type EncoderResolver interface {
	Encoder(name string) (Encoder, error)
}
