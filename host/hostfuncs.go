package host

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
)

// instantiateHostModule provides the "osprey" imports (ABI.md §3) in a runtime. They are Go
// module functions taking the raw stack (no reflection: ~240 ns a round trip instead of
// ~3 µs).
func (h *Host) instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(abi.HostModule)
	def := func(name string, fn api.GoModuleFunc) {
		sig := hostImports[name]
		b.NewFunctionBuilder().WithGoModuleFunction(fn, sig[0], sig[1]).Export(name)
	}
	def(abi.ImportGetFeature, h.getFeature)
	def(abi.ImportResult, h.resultSlot)
	def(abi.ImportLog, h.guestLog)
	def(abi.ImportNow, func(_ context.Context, _ api.Module, stack []uint64) {
		stack[0] = uint64(time.Now().UnixNano())
	})
	def(abi.ImportStorageGet, h.storageGet)
	def(abi.ImportStorageSet, h.storageSet)
	def(abi.ImportStorageClear, h.storageClear)
	def(abi.ImportSend, h.send)
	def(abi.ImportSendAfter, h.sendAfter)
	def(abi.ImportCancel, h.cancel)
	def(abi.ImportEgress, h.egress)
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("host: host module: %w", err)
	}
	return nil
}

// guestFault is a guest breaking the protocol inside a host function (a pointer outside its
// memory, a malformed encoding): the call fails and the instance is discarded.
type guestFault struct{ msg string }

func (g guestFault) Error() string { return g.msg }

func fault(format string, args ...any) { panic(guestFault{fmt.Sprintf(format, args...)}) }

// callingInstance finds the instance a host function was called from (a map lookup per
// host call rather than a context value per guest call: host calls are the rarer).
func (h *Host) callingInstance(mod api.Module, fn string) *instance {
	v, _ := h.instances.Load(mod)
	inst, _ := v.(*instance)
	if inst == nil || inst.fqn == "" {
		fault("%s.%s called outside a program or middleware call (e.g. during _initialize or osprey_configure)", abi.HostModule, fn)
	}
	if inst.stopped() {
		fault("%s.%s called after the call was stopped", abi.HostModule, fn)
	}
	return inst
}

func read(mod api.Module, ptr, n uint32, what string) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		fault("%s at %#x (%d bytes) is outside the guest's memory", what, ptr, n)
	}
	return b
}

// deliver hands a result to the guest by the result-slot convention and returns n for it.
func (inst *instance) deliver(mod api.Module, outPtr, outCap uint32, b []byte, failed bool) uint64 {
	n := int32(len(b))
	if failed {
		inst.held = append(inst.held[:0], b...)
		return uint64(uint32(-n))
	}
	if uint32(len(b)) <= outCap {
		if !mod.Memory().Write(outPtr, b) {
			fault("output buffer at %#x (%d bytes) is outside the guest's memory", outPtr, outCap)
		}
		inst.held = inst.held[:0]
		return uint64(uint32(n))
	}
	inst.held = append(inst.held[:0], b...)
	return uint64(uint32(n))
}

// getFeature: (sel_ptr, sel_len, keys_ptr, keys_len, out_ptr, out_cap) -> i32.
func (h *Host) getFeature(ctx context.Context, mod api.Module, stack []uint64) {
	inst := h.callingInstance(mod, abi.ImportGetFeature)
	sel := string(read(mod, uint32(stack[0]), uint32(stack[1]), "selector"))
	var d abi.Decoder
	d.Reset(read(mod, uint32(stack[2]), uint32(stack[3]), "keys"))
	kvs := d.Keys()
	if err := d.Done(); err != nil {
		fault("get_feature keys: %v", err)
	}
	outPtr, outCap := uint32(stack[4]), uint32(stack[5])
	if inst.reader == nil {
		stack[0] = inst.deliver(mod, outPtr, outCap, []byte("get_feature: this call cannot read features"), true)
		return
	}
	res, err := inst.reader.Get(ctx, sel, keysToEngine(kvs))
	if err != nil {
		stack[0] = inst.deliver(mod, outPtr, outCap, []byte(err.Error()), true)
		return
	}
	r := abi.GetResult{Found: res.Found(), Fresh: res.Fresh}
	if r.Found {
		r.Value = valueToABI(res.Value)
		r.Timestamp = res.Timestamp.UnixNano()
	}
	inst.scratch = abi.AppendGetResult(inst.scratch[:0], &r)
	stack[0] = inst.deliver(mod, outPtr, outCap, inst.scratch, false)
}

// resultSlot: (out_ptr, out_cap) -> i32.
func (h *Host) resultSlot(_ context.Context, mod api.Module, stack []uint64) {
	inst := h.callingInstance(mod, abi.ImportResult)
	outPtr, outCap := uint32(stack[0]), uint32(stack[1])
	if len(inst.held) == 0 || uint32(len(inst.held)) > outCap {
		stack[0] = uint64(uint32(0xFFFFFFFF)) // -1
		return
	}
	if !mod.Memory().Write(outPtr, inst.held) {
		fault("result buffer at %#x (%d bytes) is outside the guest's memory", outPtr, outCap)
	}
	stack[0] = uint64(uint32(len(inst.held)))
	inst.held = inst.held[:0]
}

// failed holds msg as the result of a failed call (ABI §3: n < 0) and returns n for the
// guest. msg must not be empty (that would read as success).
func (inst *instance) failed(msg string) uint64 {
	if msg == "" {
		msg = "failed"
	}
	inst.held = append(inst.held[:0], msg...)
	return uint64(uint32(-int32(len(inst.held))))
}

// Storage (ABI 1.2, ABI.md §4.5): the three storage_* imports reach the storage of the
// program call's address through the engine's Invocation, which keeps the invocation's
// writes until the engine commits them with the program's value.

// storageCall checks a storage_* call — made during a program call, before its deadline
// (callingInstance) — and returns the instance and the storage name, bounds-checked.
func (h *Host) storageCall(mod api.Module, fn string, namePtr, nameLen uint32) (*instance, string) {
	inst := h.callingInstance(mod, fn)
	if inst.role != roleProgram {
		// Unreachable through apply, which refuses a middleware importing storage.
		fault("%s.%s called during a middleware call: storage is a program's", abi.HostModule, fn)
	}
	return inst, inst.storageName(read(mod, namePtr, nameLen, "storage name"))
}

// storageName returns the name at b as a string: the feature's declared name it equals,
// without allocating, or else a copy (which the engine refuses, naming it).
func (inst *instance) storageName(b []byte) string {
	for _, s := range inst.storage {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// noStorage returns, when the call cannot reach a storage value, the error for the guest
// and true: the feature declares no storage (decided by its spec.builder.storage, not by the
// Invocation, which the engine gives every program call when its state keeps mailboxes), or
// the call has no Invocation (a caller other than the engine's that gave none).
func (inst *instance) noStorage() (uint64, bool) {
	switch {
	case len(inst.storage) == 0:
		return inst.failed(engine.ErrStorage.Error() + ": " + inst.fqn + " declares no storage (spec.builder.storage)"), true
	case inst.inv == nil:
		return inst.failed(engine.ErrUnsupported.Error() + ": storage of " + inst.fqn + ": this program call has no invocation to keep it (its caller gave none)"), true
	}
	return 0, false
}

// storageGet: (name_ptr, name_len, out_ptr, out_cap) -> i32; the result is a Value, Null
// when the value is not set.
func (h *Host) storageGet(ctx context.Context, mod api.Module, stack []uint64) {
	inst, name := h.storageCall(mod, abi.ImportStorageGet, uint32(stack[0]), uint32(stack[1]))
	outPtr, outCap := uint32(stack[2]), uint32(stack[3])
	if n, no := inst.noStorage(); no {
		stack[0] = n
		return
	}
	v, found, err := inst.inv.Storage(ctx, name)
	if err != nil {
		stack[0] = inst.failed(err.Error())
		return
	}
	if !found {
		v = engine.Null
	}
	inst.scratch = appendValue(inst.scratch[:0], v)
	stack[0] = inst.deliver(mod, outPtr, outCap, inst.scratch, false)
}

// storageSet: (name_ptr, name_len, val_ptr, val_len) -> i32; val is a storage value (a
// Value of a primitive kind, or Null, which clears). 0 on success.
func (h *Host) storageSet(ctx context.Context, mod api.Module, stack []uint64) {
	inst, name := h.storageCall(mod, abi.ImportStorageSet, uint32(stack[0]), uint32(stack[1]))
	var d abi.Decoder
	d.Reset(read(mod, uint32(stack[2]), uint32(stack[3]), "storage value"))
	av := d.StorageValue()
	if err := d.Done(); err != nil {
		fault("%s %q: %v", abi.ImportStorageSet, name, err)
	}
	if n, no := inst.noStorage(); no {
		stack[0] = n
		return
	}
	v, err := valueToEngine(av)
	if err != nil { // a NaN or an infinity
		stack[0] = inst.failed(fmt.Sprintf("%v: storage %q of %s: %v", engine.ErrStorage, name, inst.fqn, err))
		return
	}
	if err := inst.inv.SetStorage(ctx, name, v); err != nil {
		stack[0] = inst.failed(err.Error())
		return
	}
	inst.held = inst.held[:0]
	stack[0] = 0
}

// storageClear: (name_ptr, name_len) -> i32; 0 on success.
func (h *Host) storageClear(ctx context.Context, mod api.Module, stack []uint64) {
	inst, name := h.storageCall(mod, abi.ImportStorageClear, uint32(stack[0]), uint32(stack[1]))
	if n, no := inst.noStorage(); no {
		stack[0] = n
		return
	}
	if err := inst.inv.ClearStorage(ctx, name); err != nil {
		stack[0] = inst.failed(err.Error())
		return
	}
	inst.held = inst.held[:0]
	stack[0] = 0
}

// Messages (ABI 1.2, ABI.md §4.6): send, send_after, cancel and egress reach the engine's
// Invocation of the program call, which keeps what the invocation sends until the engine
// commits it together with the program's value and storage. What the engine refuses —
// wrapping engine.ErrMessage, engine.ErrHopLimit or engine.ErrUnsupported — is returned to
// the guest (n < 0, the message held); what breaks the protocol (a pointer outside memory, a
// malformed Keys, message or Row, a negative delay) faults the call.

// messageCall checks a message call — made during a program call, before its deadline
// (callingInstance) — and returns the instance.
func (h *Host) messageCall(mod api.Module, fn string) *instance {
	inst := h.callingInstance(mod, fn)
	if inst.role != roleProgram {
		// Unreachable through apply, which refuses a middleware importing them.
		fault("%s.%s called during a middleware call: messages are a program's", abi.HostModule, fn)
	}
	return inst
}

// noMessages returns, when the call has no Invocation to send from (the state provider
// keeps no mailboxes, and the feature declares no storage), the error for the guest and
// true.
func (inst *instance) noMessages(fn string) (uint64, bool) {
	if inst.inv != nil {
		return 0, false
	}
	return inst.failed(fmt.Sprintf("%v: %s: %s cannot send messages: the state provider keeps no mailboxes", engine.ErrUnsupported, fn, inst.fqn)), true
}

// sendArgs reads a send's target and message from the stack, starting at slot i: fqn_ptr,
// fqn_len, keys_ptr, keys_len, msg_ptr, msg_len.
func sendArgs(mod api.Module, fn string, stack []uint64, i int) (engine.Address, abi.Value) {
	fqn := string(read(mod, uint32(stack[i]), uint32(stack[i+1]), "target fqn"))
	var d abi.Decoder
	d.Reset(read(mod, uint32(stack[i+2]), uint32(stack[i+3]), "target keys"))
	kvs := d.Keys()
	if err := d.Done(); err != nil {
		fault("%s to %q: keys: %v", fn, fqn, err)
	}
	d.Reset(read(mod, uint32(stack[i+4]), uint32(stack[i+5]), "message"))
	msg := d.MessageValue()
	if err := d.Done(); err != nil {
		fault("%s to %q: message: %v", fn, fqn, err)
	}
	return engine.Address{FQN: fqn, Keys: keysToEngine(kvs)}, msg
}

// messageValue converts a guest's message, or returns why it is not one.
func messageValue(av abi.Value) (engine.Value, error) {
	if av.Tag == abi.TagNull {
		return engine.Null, fmt.Errorf("%w: a message is never null (send a value of the target's spec.builder.messages type)", engine.ErrMessage)
	}
	v, err := valueToEngine(av)
	if err != nil { // a NaN or an infinity
		return engine.Null, fmt.Errorf("%w: %w", engine.ErrMessage, err)
	}
	return v, nil
}

// status returns a message call's result for the guest: 0, or the error held.
func (inst *instance) status(err error) uint64 {
	if err != nil {
		return inst.failed(err.Error())
	}
	inst.held = inst.held[:0]
	return 0
}

// send: (fqn_ptr, fqn_len, keys_ptr, keys_len, msg_ptr, msg_len) -> i32; 0 on success.
func (h *Host) send(ctx context.Context, mod api.Module, stack []uint64) {
	inst := h.messageCall(mod, abi.ImportSend)
	to, av := sendArgs(mod, abi.ImportSend, stack, 0)
	if n, no := inst.noMessages(abi.ImportSend); no {
		stack[0] = n
		return
	}
	v, err := messageValue(av)
	if err == nil {
		err = inst.inv.Send(ctx, to, v)
	}
	stack[0] = inst.status(err)
}

// sendAfter: (delay_ns: i64, token_ptr, token_len, fqn_ptr, fqn_len, keys_ptr, keys_len,
// msg_ptr, msg_len: i32) -> i32; 0 on success. A negative delay breaks the protocol.
func (h *Host) sendAfter(ctx context.Context, mod api.Module, stack []uint64) {
	inst := h.messageCall(mod, abi.ImportSendAfter)
	delay := int64(stack[0])
	token := string(read(mod, uint32(stack[1]), uint32(stack[2]), "token"))
	if delay < 0 {
		fault("%s %q: negative delay %d ns", abi.ImportSendAfter, token, delay)
	}
	to, av := sendArgs(mod, abi.ImportSendAfter, stack, 3)
	if n, no := inst.noMessages(abi.ImportSendAfter); no {
		stack[0] = n
		return
	}
	v, err := messageValue(av)
	if err == nil {
		err = inst.inv.SendAfter(ctx, time.Duration(delay), token, to, v)
	}
	stack[0] = inst.status(err)
}

// cancel: (token_ptr, token_len) -> i32; 0 on success (also when nothing was pending).
func (h *Host) cancel(ctx context.Context, mod api.Module, stack []uint64) {
	inst := h.messageCall(mod, abi.ImportCancel)
	token := string(read(mod, uint32(stack[0]), uint32(stack[1]), "token"))
	if n, no := inst.noMessages(abi.ImportCancel); no {
		stack[0] = n
		return
	}
	stack[0] = inst.status(inst.inv.Cancel(ctx, token))
}

// egress: (name_ptr, name_len, row_ptr, row_len) -> i32; row is an egress row (a Row of
// storage values). 0 on success.
func (h *Host) egress(ctx context.Context, mod api.Module, stack []uint64) {
	inst := h.messageCall(mod, abi.ImportEgress)
	name := string(read(mod, uint32(stack[0]), uint32(stack[1]), "egress name"))
	var d abi.Decoder
	d.Reset(read(mod, uint32(stack[2]), uint32(stack[3]), "egress row"))
	fields := d.EgressRow()
	if err := d.Done(); err != nil {
		fault("%s %q: row: %v", abi.ImportEgress, name, err)
	}
	if n, no := inst.noMessages(abi.ImportEgress); no {
		stack[0] = n
		return
	}
	row := make(engine.Row, len(fields))
	for _, f := range fields {
		v, err := valueToEngine(f.Value)
		if err != nil { // a NaN or an infinity
			stack[0] = inst.failed(fmt.Sprintf("%v: egress %q: field %q: %v", engine.ErrMessage, name, f.Name, err))
			return
		}
		row[f.Name] = v
	}
	stack[0] = inst.status(inst.inv.Emit(ctx, name, row))
}
