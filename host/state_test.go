package host_test

import (
	"testing"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

func newState(t testing.TB) engine.State {
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	return st
}
