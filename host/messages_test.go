package host_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

// egresses is an engine.EgressResolver of one egress, "default.alerts" (a program emits to
// "alerts", in the default namespace), that records what it gets.
type egresses struct {
	mu   sync.Mutex
	got  []engine.EgressMessage
	name string
}

func (r *egresses) Egress(name string) (engine.Egress, error) {
	if name != r.name {
		return nil, errors.New("no egress " + strconv.Quote(name) + " is applied")
	}
	return r, nil
}

func (r *egresses) Emit(_ context.Context, m engine.EgressMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, m)
	return nil
}

// messageEngine returns an engine over the in-process state (which keeps mailboxes)
// running programs with h, delivering messages only when the test calls DeliverMessages,
// with a hop limit of 3, the egress "alerts", and the data sources t.rows (ingested) and
// t.none (never ingested: the receiver's values are written by messages only).
func messageEngine(t *testing.T, h *host.Host) (*engine.Engine, *egresses, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	st := memory.New(memory.WithClock(c.Now))
	t.Cleanup(func() { st.Close() })
	if _, ok := engine.State(st).(engine.MessageState); !ok {
		t.Fatal("the in-process state keeps no mailboxes")
	}
	eg := &egresses{name: "default.alerts"}
	e := engine.New(st, engine.WithPrograms(h), engine.WithMiddlewareResolver(h.Resolver(nil)),
		engine.WithClock(c.Now), engine.WithLogger(slog.New(slog.DiscardHandler)),
		engine.WithDelivery(engine.Delivery{Poll: -1}), engine.WithMaxHops(3), engine.WithEgresses(eg))
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	for _, ds := range []string{"t.rows", "t.none"} {
		if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: ds, Kind: "rows"}); err != nil {
			t.Fatal(err)
		}
	}
	return e, eg, c
}

// receiver is the feature of host/testdata/guests/messages that receives int messages and
// whose string value they write.
func receiver(t *testing.T, h *host.Host, fqn string, wasm []byte) *engine.Feature {
	f := feature(t, h, fqn, wasm)
	f.Primitive = engine.PrimitiveString
	f.Messages = engine.PrimitiveInt
	f.DataSource = "t.none"
	f.Timeout = 2 * time.Second
	f.Builder.Config = map[string]string{"memoryLimit": "24Mi"}
	return f
}

func sendRow(mode, to string, n int64) engine.Row {
	return engine.Row{"id": engine.String("a"), "mode": engine.String(mode), "to": engine.String(to), "n": engine.Int(n)}
}

// A Go guest's messages through the host and the engine: what it sends reaches the
// invocation (a dry run reports it), the engine's refusals reach the guest as errors, and
// delivered messages reach the receiver's message handler as message calls.
func TestMessagesGoGuest(t *testing.T) {
	wasm := buildGuest(t, "host/testdata/guests/messages")
	h := newHost(t)
	e, eg, clk := messageEngine(t, h)
	ctx := context.Background()
	if err := e.Apply(ctx, receiver(t, h, "t.recv", wasm)); err != nil {
		t.Fatal(err)
	}
	sender := storageFeature(t, h, "t.send", wasm)
	sender.Storage = nil // no storage: the engine's Invocation carries its messages alone
	if err := e.Apply(ctx, sender); err != nil {
		t.Fatal(err)
	}
	dry := func(row engine.Row) engine.DryRunResult {
		t.Helper()
		out, err := e.DryRun(ctx, "t.send", nil, row, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if out.Value.Int() != 1 {
			t.Fatalf("value %v, want 1", out.Value)
		}
		return out
	}

	// What the guest sends reaches the invocation.
	out := dry(sendRow("send", "t.recv", 2))
	if len(out.Sends) != 1 {
		t.Fatalf("sends %+v, want 1", out.Sends)
	}
	s := out.Sends[0]
	if s.To.String() != "t.recv{id=a}" || s.From.String() != "t.send{id=a}" || !s.Value.Equal(engine.Int(2)) || s.Hops != 1 || s.Token != "" || !s.Due.IsZero() {
		t.Errorf("send = %+v", s)
	}
	after := sendRow("after", "t.recv", 7)
	after["delay"], after["token"] = engine.Int(int64(90*time.Second)), engine.String("remind")
	out = dry(after)
	if len(out.Sends) != 1 || out.Sends[0].Token != "remind" || !out.Sends[0].Due.Equal(clk.Now().Add(90*time.Second)) || !out.Sends[0].Value.Equal(engine.Int(7)) {
		t.Errorf("send_after = %+v", out.Sends)
	}
	cancel := sendRow("cancel", "", 0)
	cancel["token"] = engine.String("remind")
	if out = dry(cancel); len(out.Cancels) != 1 || out.Cancels[0] != "remind" || len(out.Sends) != 0 {
		t.Errorf("cancel = %+v, %+v", out.Cancels, out.Sends)
	}
	egress := sendRow("egress", "", 5)
	egress["egress"] = engine.String("alerts")
	if out = dry(egress); len(out.Sends) != 1 || out.Sends[0].Egress != "default.alerts" || !out.Sends[0].Row["n"].Equal(engine.Int(5)) || out.Sends[0].Row["id"].Str() != "a" {
		t.Errorf("egress = %+v", out.Sends)
	}

	// The engine's refusals reach the guest, which returns them: the call fails with them.
	tooLate := sendRow("after", "t.recv", 1)
	tooLate["delay"], tooLate["token"] = engine.Int(int64(engine.MaxDelay+time.Hour)), engine.String("x")
	noToken := sendRow("after", "t.recv", 1)
	nowhere := sendRow("egress", "", 1)
	nowhere["egress"] = engine.String("nowhere")
	for _, tt := range []struct {
		name string
		row  engine.Row
		msg  string
	}{
		{"not applied", sendRow("send", "t.nope", 1), "send to t.nope: invalid message: target: "},
		{"receives none", sendRow("send", "t.send", 1), "send to t.send: invalid message: target t.send receives no messages"},
		{"null", sendRow("sendnull", "t.recv", 0), "send to t.recv: invalid message: a message is never null"},
		{"delay", tooLate, `send_after "x" to t.recv: invalid message: delay`},
		{"no token", noToken, `send_after "" to t.recv: invalid message: a delayed message needs a token`},
		{"cancel no token", sendRow("cancel", "", 0), `cancel "": invalid message: a delayed message needs a token`},
		{"unknown egress", nowhere, `egress "nowhere": invalid message: egress "default.nowhere": no egress "default.nowhere" is applied`},
	} {
		_, err := e.DryRun(ctx, "t.send", nil, tt.row, time.Time{})
		if !errors.Is(err, host.ErrGuestFailed) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want the guest's error saying %q", tt.name, err, tt.msg)
		}
	}
	// A refused send leaves the invocation going: the guest swallows the error.
	if out, err := e.DryRun(ctx, "t.send", nil, sendRow("swallow", "t.nope", 1), time.Time{}); err != nil || out.Value.Int() != -1 || len(out.Sends) != 0 {
		t.Errorf("swallowed refusal: %+v, %v", out, err)
	}

	// Delivered: the receiver's message handler runs for each message of the chain (2, 1,
	// 0), each a message call with the sender, hops and attempt, and the event time of the
	// row that started it.
	ingest := func(row engine.Row) {
		t.Helper()
		if _, err := e.Ingest(ctx, "t.rows", []engine.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	value := func(fqn string) string {
		t.Helper()
		if _, err := e.DeliverMessages(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := e.Get(ctx, fqn, engine.Keys{"id": "a"})
		if err != nil || !res.Found() {
			t.Fatalf("get %s: %v, %v", fqn, res.Value, err)
		}
		return res.Value.Str()
	}
	ingest(sendRow("send", "t.recv", 2))
	ts := strconv.FormatInt(clk.Now().UnixNano(), 10) // the rows' data source has no timestampField
	if got, want := value("t.recv"), "from=t.recv{id=a} hops=3 attempt=1 value=0 ts="+ts; got != want {
		t.Errorf("after a chain of 3: %q, want %q", got, want)
	}
	// A chain longer than the hop limit: the third hop's send is refused, and the receiver
	// says so.
	ingest(sendRow("send", "t.recv", 5))
	if got, want := value("t.recv"), "refused at hops=3: send to t.recv: hop limit reached: this send would be hop 4"; !strings.HasPrefix(got, want) {
		t.Errorf("past the hop limit: %q, want it to start %q", got, want)
	}
	// An egress message reaches the egress.
	ingest(egress)
	value("t.recv")
	eg.mu.Lock()
	if len(eg.got) != 1 || eg.got[0].Egress != "default.alerts" || eg.got[0].From.String() != "t.send{id=a}" || !eg.got[0].Row["n"].Equal(engine.Int(5)) {
		t.Errorf("egress got %+v", eg.got)
	}
	eg.mu.Unlock()
}

// A message call through the host alone: the program gets the receiving address, the event
// time, the sender, hops, attempt and value; the host refuses a message for a feature that
// receives none, and one that the ABI cannot carry.
func TestMessageCall(t *testing.T) {
	wasm := buildGuest(t, "host/testdata/guests/messages")
	h := newHost(t)
	ctx := context.Background()
	p, err := h.LoadProgram(ctx, receiver(t, h, "t.recv", wasm))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(0, 1700000000123456789)
	call := func(m *engine.Received) (engine.ProgramResult, error) {
		return p.Run(ctx, &engine.ProgramCall{Keys: engine.Keys{"id": "a"}, Timestamp: at, Message: m})
	}
	from := engine.Address{FQN: "t.send", Keys: engine.Keys{"id": "b"}}
	res, err := call(&engine.Received{From: from, Value: engine.Int(0), Hops: 2, Attempt: 3})
	if want := "from=t.send{id=b} hops=2 attempt=3 value=0 ts=1700000000123456789"; err != nil || res.Value.Str() != want {
		t.Errorf("message call = %v, %v; want %q", res.Value, err, want)
	}
	// Without an Invocation (no engine), the guest's send is refused as unsupported.
	res, err = call(&engine.Received{From: from, Value: engine.Int(1), Hops: 1, Attempt: 1})
	if want := "refused at hops=1: send to t.recv: unsupported operation: send: t.recv cannot send messages: the state provider keeps no mailboxes"; err != nil || res.Value.Str() != want {
		t.Errorf("send without an invocation = %v, %v; want %q", res.Value, err, want)
	}
	for _, tt := range []struct {
		name string
		m    *engine.Received
		want error
		msg  string
	}{
		{"hops 0", &engine.Received{From: from, Value: engine.Int(1), Attempt: 1}, engine.ErrMessage, "hops 0 and attempt 1"},
		{"attempt 0", &engine.Received{From: from, Value: engine.Int(1), Hops: 1}, engine.ErrMessage, "hops 1 and attempt 0"},
		{"null", &engine.Received{From: from, Hops: 1, Attempt: 1}, engine.ErrMessage, "a message is null"},
	} {
		if _, err := call(tt.m); !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want %v saying %q", tt.name, err, tt.want, tt.msg)
		}
	}
	plain := receiver(t, h, "t.plain", wasm)
	plain.Messages = engine.PrimitiveUnknown
	q, err := h.LoadProgram(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.Run(ctx, &engine.ProgramCall{Keys: engine.Keys{"id": "a"}, Timestamp: at, Message: &engine.Received{From: from, Value: engine.Int(1), Hops: 1, Attempt: 1}})
	if !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), "wasm t.plain: unsupported operation: a message for a feature that declares no spec.builder.messages") {
		t.Errorf("a message for a feature that receives none: %v", err)
	}
}

// Negotiation: a module importing a message import must report ABI 1.2, and is only a
// program; a feature that receives messages needs a 1.2 module; 1.0 and 1.1 guests run
// unchanged when the state keeps mailboxes (every program call then has an Invocation).
func TestMessagesNegotiation(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		version uint32
	}{{"1.0", abi.Version10}, {"1.1", abi.Version11}} {
		want := "invalid module: imports osprey.send, which ABI 1.2 defines, but osprey_abi_version returns " + tt.name
		_, err := h.LoadProgram(ctx, feature(t, h, "t.old", wb.MessageGuest(tt.version, abi.ExportProgram, nil)))
		if !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s guest importing send: %v, want %q", tt.name, err, want)
		}
	}
	p, err := h.LoadProgram(ctx, feature(t, h, "t.new", wb.MessageGuest(abi.Version12, abi.ExportProgram, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := run(p, time.Second); err != nil || res.Value.Int() != 42 {
		t.Fatalf("1.2 guest importing send: %v, %v", res.Value, err)
	}

	// A middleware has no address to send from: refused when resolved, prepared or applied.
	ref, err := h.AddModule(wb.MessageGuest(abi.Version12, abi.ExportMiddleware, nil))
	if err != nil {
		t.Fatal(err)
	}
	const refused = "invalid module: imports osprey.send, but messages are a program's"
	e, _, _ := messageEngine(t, h)
	wantRefusedAsMiddleware(t, h, e, ref, refused)

	// A feature that receives messages needs a module that takes message calls (1.2).
	for _, tt := range []struct {
		name string
		wasm []byte
	}{{"1.0", wb.ABIVersion(abi.Version10)}, {"1.1", wb.ConfigurableProgram(abi.Version11, false)}} {
		f := storageFeature(t, h, "t.recv"+tt.name[2:], tt.wasm)
		f.Storage, f.Builder.Config, f.Messages = nil, nil, engine.PrimitiveInt
		want := "invalid module: the feature receives messages (spec.builder.messages), which ABI 1.2 delivers as message calls, but osprey_abi_version returns " + tt.name
		if _, err := h.LoadProgram(ctx, f); !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: load: %v, want %q", tt.name, err, want)
		}
		if err := h.Prepare(ctx, f); !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), "apply "+f.FQN+": spec.builder: module "+f.Builder.Module+": "+want) {
			t.Errorf("%s: prepare: %v", tt.name, err)
		}
		if err := e.Apply(ctx, f); !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), "apply "+f.FQN+": spec.builder: module "+f.Builder.Module+": "+want) {
			t.Errorf("%s: apply: %v", tt.name, err)
		}
	}
	f := storageFeature(t, h, "t.recv12", wb.ABIVersion(abi.Version12))
	f.Storage, f.Builder.Config, f.Messages = nil, nil, engine.PrimitiveInt
	if err := e.Apply(ctx, f); err != nil {
		t.Errorf("a 1.2 module receiving messages: %v", err)
	}

	// 1.0 and 1.1 guests, which import nothing of 1.2, run as before on a state that keeps
	// mailboxes, for features without storage.
	for _, tt := range []struct {
		name string
		wasm []byte
		want int64
	}{
		{"1.0", wb.ABIVersion(abi.Version10), 42},
		{"1.1 configured", wb.ConfigurableProgram(abi.Version11, false), 1},
	} {
		f := storageFeature(t, h, "t.v"+strings.ReplaceAll(tt.name[:3], ".", ""), tt.wasm)
		f.Storage, f.Builder.Config = nil, map[string]string{"k": "v"}
		if err := e.Apply(ctx, f); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for range 2 {
			if _, err := e.Ingest(ctx, "t.rows", []engine.Row{{"id": engine.String("a")}}); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got, err := e.Get(ctx, f.FQN, engine.Keys{"id": "a"}); err != nil || got.Value.Int() != tt.want {
				t.Fatalf("%s: %v, %v; want %d", tt.name, got.Value, err, tt.want)
			}
		}
	}
}

// What breaks the protocol in a message call fails the call and discards the instance: a
// pointer outside memory, malformed keys, a message or row the encoding does not allow, a
// negative delay, a call outside a program call. What the engine refuses is returned to the
// guest (here, a Null message, returned by the fixture as its error).
func TestMessagesProtocolErrors(t *testing.T) {
	h := newHost(t)
	e, _, _ := messageEngine(t, h)
	ctx := context.Background()
	if err := e.Apply(ctx, receiver(t, h, "t.recv", wb.ABIVersion(abi.Version12))); err != nil {
		t.Fatal(err)
	}
	const fqn, fqnPtr, keysPtr, msgPtr, rowPtr, badPtr = "t.recv", 3000, 3100, 3200, 3300, 3400
	keys := abi.AppendKeys(nil, []abi.KV{{Name: "id", Value: "a"}})
	window := abi.AppendValue(nil, abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrCount, Count: 1}})
	row := abi.AppendRow(nil, []abi.Field{{Name: "w", Value: abi.Value{Tag: abi.TagWindow}}})
	guest := func(call ...[]byte) []byte {
		return wb.MessageGuest(abi.Version12, abi.ExportProgram, func(m *wb.Module) uint32 {
			m.Data(fqnPtr, []byte(fqn))
			m.Data(keysPtr, keys)
			m.Data(msgPtr, window)
			m.Data(rowPtr, row)
			m.Data(badPtr, []byte{2, 1, 'a', 0}) // Keys claiming 2 pairs, holding half of one
			return m.Func(wb.ProgramType, []wb.ValType{wb.I32}, wb.Seq(call...), wb.ReturnHeldError(wb.ResultFunc, 2))
		})
	}
	i32 := func(vs ...int32) []byte {
		var b []byte
		for _, v := range vs {
			b = append(b, wb.I32Const(v)...)
		}
		return b
	}
	target := i32(fqnPtr, int32(len(fqn)), keysPtr, int32(len(keys)))
	null := []byte{byte(abi.TagNull)}
	for i, tt := range []struct {
		name string
		wasm []byte
		msg  string
	}{
		{"fqn outside memory", guest(i32(-65536, 6, keysPtr, int32(len(keys)), msgPtr, 9), wb.Call(wb.SendFunc)),
			"target fqn at 0xffff0000 (6 bytes) is outside the guest's memory"},
		{"malformed keys", guest(i32(fqnPtr, int32(len(fqn)), badPtr, 4, msgPtr, 9), wb.Call(wb.SendFunc)),
			`send to "t.recv": keys: abi: malformed message`},
		{"window message", guest(target, i32(msgPtr, int32(len(window))), wb.Call(wb.SendFunc)),
			`send to "t.recv": message: abi: malformed message: a window value at byte 0 cannot be sent`},
		{"truncated message", guest(target, i32(msgPtr, 3), wb.Call(wb.SendFunc)),
			`send to "t.recv": message: abi: malformed message`},
		{"message outside memory", guest(target, i32(65530, 16), wb.Call(wb.SendFunc)),
			"message at 0xfffa (16 bytes) is outside the guest's memory"},
		{"negative delay", guest(wb.I64Const(-1), i32(fqnPtr, 1), target, i32(msgPtr, 1), wb.Call(wb.SendAfterFunc)),
			`send_after "t": negative delay -1 ns`},
		{"token outside memory", guest(wb.I64Const(1), i32(65535, 2), target, i32(msgPtr, 1), wb.Call(wb.SendAfterFunc)),
			"token at 0xffff (2 bytes) is outside the guest's memory"},
		{"cancel token outside memory", guest(i32(-1, 1), wb.Call(wb.CancelFunc)),
			"token at 0xffffffff (1 bytes) is outside the guest's memory"},
		{"window in egress row", guest(i32(fqnPtr, 1, rowPtr, int32(len(row))), wb.Call(wb.EgressFunc)),
			`egress "t": row: abi: malformed message: a window value at byte 3 cannot be sent`},
		{"malformed egress row", guest(i32(fqnPtr, 1, badPtr, 4), wb.Call(wb.EgressFunc)),
			`egress "t": row: abi: malformed message`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := storageFeature(t, h, "t.p"+string(rune('a'+i)), tt.wasm)
			f.Storage, f.Builder.Config = nil, nil
			if err := e.Apply(ctx, f); err != nil {
				t.Fatal(err)
			}
			defer e.Delete(ctx, f.FQN)
			for range 2 { // the broken instance is discarded; the next one fails the same way
				_, err := e.DryRun(ctx, f.FQN, nil, engine.Row{"id": engine.String("a")}, time.Time{})
				if !errors.Is(err, host.ErrTrap) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want ErrTrap saying %q", err, tt.msg)
				}
			}
		})
	}

	// A Null message is the engine's refusal, returned to the guest (which returns it).
	nullGuest := wb.MessageGuest(abi.Version12, abi.ExportProgram, func(m *wb.Module) uint32 {
		m.Data(fqnPtr, []byte(fqn))
		m.Data(keysPtr, keys)
		m.Data(msgPtr, null)
		return m.Func(wb.ProgramType, []wb.ValType{wb.I32}, target, i32(msgPtr, 1), wb.Call(wb.SendFunc), wb.ReturnHeldError(wb.ResultFunc, 2))
	})
	f := storageFeature(t, h, "t.null", nullGuest)
	f.Storage, f.Builder.Config = nil, nil
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	_, err := e.DryRun(ctx, f.FQN, nil, engine.Row{"id": engine.String("a")}, time.Time{})
	if !errors.Is(err, host.ErrGuestFailed) || !strings.Contains(err.Error(), "the program failed: invalid message: a message is never null") {
		t.Errorf("null message: %v", err)
	}
	// A valid send from the same fixture returns 0 and reaches the invocation.
	okGuest := wb.MessageGuest(abi.Version12, abi.ExportProgram, func(m *wb.Module) uint32 {
		m.Data(fqnPtr, []byte(fqn))
		m.Data(keysPtr, keys)
		m.Data(msgPtr, abi.AppendValue(nil, abi.Int(9)))
		return m.Func(wb.ProgramType, []wb.ValType{wb.I32}, target, i32(msgPtr, 9), wb.Call(wb.SendFunc), wb.ReturnHeldError(wb.ResultFunc, 2))
	})
	f = storageFeature(t, h, "t.ok", okGuest)
	f.Storage, f.Builder.Config = nil, nil
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	out, err := e.DryRun(ctx, f.FQN, nil, engine.Row{"id": engine.String("a")}, time.Time{})
	if err != nil || out.Value.Int() != 42 || len(out.Sends) != 1 || out.Sends[0].To.String() != "t.recv{id=a}" || !out.Sends[0].Value.Equal(engine.Int(9)) {
		t.Errorf("valid send: %+v, %v", out, err)
	}

	// During _initialize there is no call: the module is refused when applied.
	init := wb.MessageGuest(abi.Version12, abi.ExportProgram, func(m *wb.Module) uint32 {
		m.ExportFunc("_initialize", m.Func(wb.FuncType{}, nil, i32(0, 0), wb.Call(wb.CancelFunc), wb.Drop()))
		return m.Func(wb.ProgramType, nil, wb.OKResult())
	})
	err = e.Apply(ctx, storageFeature(t, h, "t.init", init))
	if !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), "osprey.cancel called outside a program or middleware call") {
		t.Errorf("cancel during _initialize: %v", err)
	}
}

// Every instance must report the version the module was checked with when applied (which
// decided whether its feature may receive message calls).
func TestVersionStaysAsApplied(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "t.v", wb.ABIVersion(abi.Version12))
	if err := host.NewInstanceForBenchmark(context.Background(), p); err != nil {
		t.Fatalf("an instance of the same version: %v", err)
	}
	host.SetModuleVersion(p, abi.Version11)
	err := host.NewInstanceForBenchmark(context.Background(), p)
	if !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), "osprey_abi_version returns 1.2, but returned 1.1 when the module was applied") {
		t.Errorf("an instance of another version: %v", err)
	}
}
