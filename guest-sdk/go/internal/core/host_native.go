//go:build !wasip1

package core

import "time"

// Host is the host bridge outside WebAssembly: the functions of ABI §3 over Go slices.
// Native builds (tests) install one with SetHost; the default fails every get_feature and
// storage call with a message saying so, discards logs and reads the real clock.
type Host interface {
	// GetFeature follows the result-slot convention with len(out) as the capacity.
	GetFeature(sel string, keys, out []byte) int32
	// Result copies the held result into out (ABI §3 result).
	Result(out []byte) int32
	// Log logs msg at level with attrs, a Row encoding (possibly empty).
	Log(level int32, msg string, attrs []byte)
	// Now returns the time in Unix nanoseconds.
	Now() int64
	// StorageGet follows the result-slot convention with len(out) as the capacity (ABI 1.2).
	StorageGet(name string, out []byte) int32
	// StorageSet sets name to val, an encoded Value: 0, or minus an error's length.
	StorageSet(name string, val []byte) int32
	// StorageClear clears name: 0, or minus an error's length.
	StorageClear(name string) int32
	// Send sends msg, an encoded Value, to the program at (fqn, keys), an encoded Keys
	// (ABI 1.2): 0, or minus an error's length.
	Send(fqn string, keys, msg []byte) int32
	// SendAfter sends msg to (fqn, keys) once delay nanoseconds have passed, under token:
	// 0, or minus an error's length.
	SendAfter(delay int64, token, fqn string, keys, msg []byte) int32
	// Cancel revokes the delayed message of token: 0, or minus an error's length.
	Cancel(token string) int32
	// Egress sends row, an encoded Row, to the egress name: 0, or minus an error's length.
	Egress(name string, row []byte) int32
}

var host Host = &noHost{}

// SetHost installs h as the host bridge and returns a function restoring the previous one.
// Not safe for concurrent use with calls.
func SetHost(h Host) (restore func()) {
	prev := host
	host = h
	return func() { host = prev }
}

// GetFeature calls the host bridge's GetFeature.
func GetFeature(sel string, keys, out []byte) int32 { return host.GetFeature(sel, keys, out) }

// Result calls the host bridge's Result.
func Result(out []byte) int32 { return host.Result(out) }

// Log calls the host bridge's Log.
func Log(level int32, msg string, attrs []byte) { host.Log(level, msg, attrs) }

// Now calls the host bridge's Now.
func Now() int64 { return host.Now() }

// StorageGet calls the host bridge's StorageGet.
func StorageGet(name string, out []byte) int32 { return host.StorageGet(name, out) }

// StorageSet calls the host bridge's StorageSet.
func StorageSet(name string, val []byte) int32 { return host.StorageSet(name, val) }

// StorageClear calls the host bridge's StorageClear.
func StorageClear(name string) int32 { return host.StorageClear(name) }

// Send calls the host bridge's Send.
func Send(fqn string, keys, msg []byte) int32 { return host.Send(fqn, keys, msg) }

// SendAfter calls the host bridge's SendAfter.
func SendAfter(delay int64, token, fqn string, keys, msg []byte) int32 {
	return host.SendAfter(delay, token, fqn, keys, msg)
}

// Cancel calls the host bridge's Cancel.
func Cancel(token string) int32 { return host.Cancel(token) }

// Egress calls the host bridge's Egress.
func Egress(name string, row []byte) int32 { return host.Egress(name, row) }

// Slot implements the host side of the result-slot convention (ABI §3) for native hosts.
type Slot struct {
	held []byte
	has  bool
}

// Return delivers data (or, when failed, an error message) into out: it returns the length
// written, or holds the data and returns its length (> len(out)), or holds the message and
// returns minus its length.
func (s *Slot) Return(out, data []byte, failed bool) int32 {
	s.held, s.has = nil, false
	if failed {
		s.held, s.has = append([]byte(nil), data...), true
		return -int32(len(data))
	}
	if len(data) <= len(out) {
		copy(out, data)
		return int32(len(data))
	}
	s.held, s.has = append([]byte(nil), data...), true
	return int32(len(data))
}

// Fetch implements result: it copies the held bytes into out and returns their length, or
// -1 when nothing is held or out is too small.
func (s *Slot) Fetch(out []byte) int32 {
	if !s.has || len(out) < len(s.held) {
		return -1
	}
	n := copy(out, s.held)
	s.held, s.has = nil, false
	return int32(n)
}

type noHost struct{ slot Slot }

const noHostMsg = "no Osprey host: the SDK is running outside WebAssembly and no test host is installed"

func (h *noHost) GetFeature(_ string, _, out []byte) int32 {
	return h.slot.Return(out, []byte(noHostMsg), true)
}
func (h *noHost) Result(out []byte) int32 { return h.slot.Fetch(out) }
func (h *noHost) StorageGet(_ string, out []byte) int32 {
	return h.slot.Return(out, []byte(noHostMsg), true)
}
func (h *noHost) StorageSet(string, []byte) int32 { return h.slot.Return(nil, []byte(noHostMsg), true) }
func (h *noHost) StorageClear(string) int32       { return h.slot.Return(nil, []byte(noHostMsg), true) }
func (h *noHost) Send(string, []byte, []byte) int32 {
	return h.slot.Return(nil, []byte(noHostMsg), true)
}
func (h *noHost) SendAfter(int64, string, string, []byte, []byte) int32 {
	return h.slot.Return(nil, []byte(noHostMsg), true)
}
func (h *noHost) Cancel(string) int32         { return h.slot.Return(nil, []byte(noHostMsg), true) }
func (h *noHost) Egress(string, []byte) int32 { return h.slot.Return(nil, []byte(noHostMsg), true) }
func (h *noHost) Log(int32, string, []byte)   {}
func (h *noHost) Now() int64                  { return time.Now().UnixNano() }
