package memory_test

import (
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/engine/notifiertest"
	"github.com/osprey-ml/osprey/plugins/notifier/memory"
)

func TestConformance(t *testing.T) {
	notifiertest.Run(t, notifiertest.Harness{
		New: func(t *testing.T, groups ...string) engine.Notifier {
			return mustNew(t, memory.WithGroups(groups...), memory.WithRetryDelay(time.Millisecond))
		},
		Held: func(_ *testing.T, n engine.Notifier) int { return n.(*memory.Notifier).Len() },
	})
}
