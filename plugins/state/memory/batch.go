package memory

import (
	"context"

	"github.com/osprey-ml/osprey/engine"
)

// ReadBatch reads each cell with Get or WindowAggregate (engine.BatchReader). The State has
// no round trips to save; it implements the interface so that the engine's batched GetMany
// path is exercised in-process, against the same conformance subtest as Redis.
func (s *State) ReadBatch(ctx context.Context, reads []engine.Read) []engine.ReadResult {
	out := make([]engine.ReadResult, len(reads))
	for i, r := range reads {
		if r.Feature.Windowed() {
			out[i].Window, out[i].Err = s.WindowAggregate(ctx, r.Feature, r.Keys, r.Span)
			continue
		}
		out[i].Value, out[i].Timestamp, out[i].Found, out[i].Err = s.Get(ctx, r.Feature, r.Keys, r.Version)
	}
	return out
}
