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

// SetModuleVersion changes the ABI version a program's module was checked with, as if its
// osprey_abi_version had returned v when it was applied.
func SetModuleVersion(p engine.Program, v uint32) { p.(*program).m.version = v }
