package server

import (
	"fmt"
	"io"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
)

// TestUnavailableCauses: a state or registry store out of reach, or whose connection
// closed under a command (go-redis's io.EOF when Redis crashes mid-call), is Unavailable,
// not Internal.
func TestUnavailableCauses(t *testing.T) {
	for _, cause := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, io.EOF, io.ErrUnexpectedEOF} {
		err := fmt.Errorf("get f: state: redis: get f: %w", cause)
		if got := codeOf(err); got != connect.CodeUnavailable {
			t.Errorf("codeOf(%v) = %v, want unavailable", err, got)
		}
	}
}

// TestResourceExhaustedCauses: limits a caller hits and can back off from are
// ResourceExhausted, wherever they are wrapped.
func TestResourceExhaustedCauses(t *testing.T) {
	for _, cause := range []error{engine.ErrMailboxFull, host.ErrExhausted, extism.ErrLimit} {
		err := fmt.Errorf("ingest s: 3 of 9 values written: state: %w", cause)
		if got := codeOf(err); got != connect.CodeResourceExhausted {
			t.Errorf("codeOf(%v) = %v, want resource_exhausted", err, got)
		}
	}
}
