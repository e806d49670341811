package engine

import "context"

// Encoder transforms a value on its way out, for selectors that name an [encoding]. It must
// honour ctx (the read's) and be safe for concurrent use.
type Encoder func(ctx context.Context, v Value) (Value, error)

// EncoderResolver finds an encoding by name.
type EncoderResolver interface {
	Encoder(name string) (Encoder, error)
}
