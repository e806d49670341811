package server

import (
	"fmt"
	"io"
	"syscall"
	"testing"

	"connectrpc.com/connect"
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
