package host

import (
	"context"

	"github.com/osprey-ml/osprey/engine"
)

// Stop modes for the benchmarks.
var (
	WithWazeroStop = withStopMode(stopWazero)
	WithoutStop    = withStopMode(stopNone)
)

// NewInstanceForBenchmark instantiates (and closes) one more instance of a program's module.
func NewInstanceForBenchmark(ctx context.Context, p engine.Program) error {
	inst, err := p.(*program).m.newInstance(ctx)
	if err != nil {
		return err
	}
	inst.close()
	return nil
}
