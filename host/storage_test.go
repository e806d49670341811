package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
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

// clock is a controllable clock for the engine and the in-process state.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// storageEngine returns an engine over the in-process state (which keeps programs'
// storage) running programs with h, on a clock the test moves, with the data source t.rows.
func storageEngine(t *testing.T, h *host.Host) (*engine.Engine, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	st := memory.New(memory.WithClock(c.Now))
	t.Cleanup(func() { st.Close() })
	if _, ok := engine.State(st).(engine.StorageState); !ok {
		t.Fatal("the in-process state keeps no program storage")
	}
	e := engine.New(st, engine.WithPrograms(h), engine.WithMiddlewareResolver(h.Resolver(nil)),
		engine.WithClock(c.Now), engine.WithLogger(slog.New(slog.DiscardHandler)))
	if err := e.ApplyDataSource(context.Background(), &engine.DataSource{FQN: "t.rows", Kind: "rows"}); err != nil {
		t.Fatal(err)
	}
	return e, c
}

// storageFeature is a feature of t.rows keyed by id whose program is wasm, with the
// storage host/testdata/guests/storage uses.
func storageFeature(t *testing.T, h *host.Host, fqn string, wasm []byte) *engine.Feature {
	f := feature(t, h, fqn, wasm)
	f.DataSource = "t.rows"
	f.Timeout = 2 * time.Second
	f.Builder.Config = map[string]string{"memoryLimit": "24Mi"}
	f.Storage = []engine.StorageSpec{
		{Name: "count", Primitive: engine.PrimitiveInt},
		{Name: "last", Primitive: engine.PrimitiveTimestamp, ExpireAfterWrite: time.Hour},
		{Name: "tags", Primitive: engine.PrimitiveStringList, ExpireAfterCall: time.Hour},
	}
	return f
}

func modeRow(id, mode string) engine.Row {
	return engine.Row{"id": engine.String(id), "mode": engine.String(mode)}
}

// A Go guest's storage through the host and the engine: an unset value reads as not set,
// an invocation sees its own writes, the next invocation of the address sees them
// committed, addresses are independent, and a program that fails leaves no trace.
func TestStorageGoGuest(t *testing.T) {
	wasm := buildGuest(t, "host/testdata/guests/storage")
	h := newHost(t)
	e, clk := storageEngine(t, h)
	ctx := context.Background()
	if err := e.Apply(ctx, storageFeature(t, h, "t.store", wasm)); err != nil {
		t.Fatal(err)
	}
	ingest := func(rows ...engine.Row) error {
		t.Helper()
		_, err := e.Ingest(ctx, "t.rows", rows)
		return err
	}
	mustIngest := func(rows ...engine.Row) {
		t.Helper()
		if err := ingest(rows...); err != nil {
			t.Fatal(err)
		}
	}
	value := func(id string) int64 {
		t.Helper()
		res, err := e.Get(ctx, "t.store", engine.Keys{"id": id})
		if err != nil || !res.Found() {
			t.Fatalf("get %s: %v, %v", id, res.Value, err)
		}
		return res.Value.Int()
	}
	// peek reads count through a dry run, which commits nothing.
	peek := func(id string) int64 {
		t.Helper()
		dr, err := e.DryRun(ctx, "t.store", nil, modeRow(id, "peek"), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return dr.Value.Int()
	}

	if got := peek("a"); got != -1 {
		t.Fatalf("count before any write = %d, want -1 (not set)", got)
	}
	mustIngest(modeRow("a", "count"))
	if got := value("a"); got != 1 {
		t.Fatalf("first count = %d, want 1", got)
	}
	mustIngest(modeRow("a", "count"))
	mustIngest(modeRow("b", "count"))
	if a, b := value("a"), value("b"); a != 2 || b != 1 {
		t.Fatalf("counts a=%d b=%d, want 2 and 1 (one storage per address)", a, b)
	}
	// Rows of one entity in one request see each other's writes, in order.
	mustIngest(modeRow("a", "count"), modeRow("a", "count"))
	if got := value("a"); got != 4 {
		t.Fatalf("count after two rows in one request = %d, want 4", got)
	}
	if got, err := e.DryRun(ctx, "t.store", nil, modeRow("a", "count"), time.Time{}); err != nil || got.Value.Int() != 5 || peek("a") != 4 {
		t.Fatalf("dry run = %v, %v; count after it %d, want 5 and 4 (a dry run commits nothing)", got.Value, err, peek("a"))
	}

	// A program that fails after a write — an error, a panic, a timeout — leaves no trace.
	for _, tt := range []struct{ mode, msg string }{
		{"fail", "failed after a write"},
		{"panic", "after a write"},
		{"loop", "deadline exceeded"},
	} {
		if err := ingest(modeRow("a", tt.mode)); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Fatalf("%s: %v, want an error saying %q", tt.mode, err, tt.msg)
		}
		if got := peek("a"); got != 4 {
			t.Fatalf("after %s: count %d, want 4 (nothing committed)", tt.mode, got)
		}
	}
	// Neither does a request with a failing row: its other rows' writes are not committed.
	if err := ingest(modeRow("a", "count"), modeRow("b", "fail")); err == nil {
		t.Fatal("a request with a failing row succeeded")
	}
	if got := peek("a"); got != 4 {
		t.Fatalf("after a failed request: count %d, want 4", got)
	}

	// Errors the program gets: an undeclared name, a value that does not convert.
	for _, tt := range []struct{ mode, msg string }{
		{"unknown", `storage "nope": invalid storage use: t.store declares no storage "nope"`},
		{"wrongtype", `storage "count": invalid storage use: storage "count" of t.store is int`},
	} {
		err := ingest(modeRow("a", tt.mode))
		if !errors.Is(err, host.ErrGuestFailed) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want the guest's error saying %q", tt.mode, err, tt.msg)
		}
	}
	// A value is converted to the declared type as it is written (an int as Unix seconds).
	if dr, err := e.DryRun(ctx, "t.store", nil, modeRow("a", "convert"), time.Time{}); err != nil || dr.Value.Int() != 1700000000 {
		t.Errorf("convert = %v, %v", dr.Value, err)
	}

	// Clear, alone (the program writes no value) or as Set(Null).
	mustIngest(modeRow("a", "clear"))
	if got := peek("a"); got != -1 {
		t.Fatalf("after clear: count %d, want -1", got)
	}
	mustIngest(modeRow("a", "count"), modeRow("a", "setnull"))
	if got := peek("a"); got != -1 {
		t.Fatalf("after Set(Null): count %d, want -1", got)
	}

	// Lists.
	for i, tag := range []string{"x", "é", ""} {
		row := modeRow("c", "tags")
		row["tag"] = engine.String(tag)
		mustIngest(row)
		if got := value("c"); got != int64(i+1) {
			t.Fatalf("tags: %d, want %d", got, i+1)
		}
	}

	// expireAfterWrite: last is forgotten an hour after it was written.
	mustIngest(modeRow("d", "last"))
	if got := value("d"); got != 0 {
		t.Fatalf("last, first: %d, want 0", got)
	}
	clk.advance(59 * time.Minute)
	mustIngest(modeRow("d", "last"))
	if got := value("d"); got != 1 {
		t.Fatalf("last, after 59m: %d, want 1", got)
	}
	clk.advance(61 * time.Minute)
	mustIngest(modeRow("d", "last"))
	if got := value("d"); got != 0 {
		t.Fatalf("last, 61m after its write: %d, want 0 (expired)", got)
	}

	// The same module for a feature that declares no storage: the calls fail.
	bare := storageFeature(t, h, "t.bare", wasm)
	bare.Storage = nil
	if err := e.Apply(ctx, bare); err != nil {
		t.Fatal(err)
	}
	_, err := e.DryRun(ctx, "t.bare", nil, modeRow("a", "count"), time.Time{})
	if !errors.Is(err, host.ErrGuestFailed) || !strings.Contains(err.Error(), `storage "count": invalid storage use: t.bare declares no storage (spec.builder.storage)`) {
		t.Errorf("storage without spec.builder.storage: %v", err)
	}
}

// Negotiation: a module importing storage_* must report ABI 1.2, and is only a program;
// 1.0 and 1.1 guests run unchanged, storage or not.
func TestStorageNegotiation(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		version uint32
		msg     string
	}{
		{"1.0", abi.Version10, "invalid module: imports osprey.storage_get, which ABI 1.2 defines, but osprey_abi_version returns 1.0"},
		{"1.1", abi.Version11, "invalid module: imports osprey.storage_get, which ABI 1.2 defines, but osprey_abi_version returns 1.1"},
	} {
		_, err := h.LoadProgram(ctx, feature(t, h, "t.old", wb.StorageGuest(tt.version, abi.ExportProgram, nil)))
		if !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s guest importing storage: %v, want %q", tt.name, err, tt.msg)
		}
	}
	for _, v := range []uint32{abi.Version12, abi.Major<<16 | 7} {
		p, err := h.LoadProgram(ctx, feature(t, h, "t.new", wb.StorageGuest(v, abi.ExportProgram, nil)))
		if err != nil {
			t.Fatalf("%#x: %v", v, err)
		}
		if res, err := run(p, time.Second); err != nil || res.Value.Int() != 42 {
			t.Fatalf("%#x: run = %v, %v", v, res.Value, err)
		}
	}

	// A middleware has no storage: refused when resolved, applied or prepared.
	mw := wb.StorageGuest(abi.Version12, abi.ExportMiddleware, nil)
	ref, err := h.AddModule(mw)
	if err != nil {
		t.Fatal(err)
	}
	const refused = "invalid module: imports osprey.storage_get, but storage is a program's"
	e, _ := storageEngine(t, h)
	wantRefusedAsMiddleware(t, h, e, ref, refused)

	// 1.0 and 1.1 guests, which import no storage, run as before, also for a feature that
	// declares storage.
	for _, tt := range []struct {
		name string
		wasm []byte
		want int64
	}{
		{"1.0", wb.ABIVersion(abi.Version10), 42},
		{"1.1 configured", wb.ConfigurableProgram(abi.Version11, false), 1},
	} {
		f := storageFeature(t, h, "t.v"+strings.ReplaceAll(tt.name[:3], ".", ""), tt.wasm)
		f.Builder.Config = map[string]string{"k": "v"}
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
		if err := e.Delete(ctx, f.FQN); err != nil {
			t.Fatal(err)
		}
	}
}

// What breaks the protocol in a storage call fails the call and discards the instance: a
// name or buffer outside memory, a value the encoding does not allow, a call outside a
// program call.
func TestStorageProtocolErrors(t *testing.T) {
	h := newHost(t)
	e, _ := storageEngine(t, h)
	ctx := context.Background()
	const name, namePtr, valPtr = "count", 3000, 3100
	window := abi.AppendValue(nil, abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrCount, Count: 1}})
	guest := func(call ...[]byte) []byte {
		return wb.StorageGuest(abi.Version12, abi.ExportProgram, func(m *wb.Module) uint32 {
			m.Data(namePtr, []byte(name))
			m.Data(valPtr, window)
			return m.Func(wb.ProgramType, nil, wb.Seq(call...), wb.Drop(), wb.OKResult())
		})
	}
	for i, tt := range []struct {
		name string
		wasm []byte
		msg  string
	}{
		{"name outside memory", guest(wb.I32Const(-65536), wb.I32Const(4), wb.I32Const(0), wb.I32Const(0), wb.Call(wb.StorageGetFunc)),
			"storage name at 0xffff0000 (4 bytes) is outside the guest's memory"},
		{"value outside memory", guest(wb.I32Const(namePtr), wb.I32Const(int32(len(name))), wb.I32Const(65530), wb.I32Const(16), wb.Call(wb.StorageSetFunc)),
			"storage value at 0xfffa (16 bytes) is outside the guest's memory"},
		{"window value", guest(wb.I32Const(namePtr), wb.I32Const(int32(len(name))), wb.I32Const(valPtr), wb.I32Const(int32(len(window))), wb.Call(wb.StorageSetFunc)),
			`storage_set "count": abi: malformed message: a window value at byte 0 cannot be stored`},
		{"truncated value", guest(wb.I32Const(namePtr), wb.I32Const(int32(len(name))), wb.I32Const(valPtr), wb.I32Const(3), wb.Call(wb.StorageSetFunc)),
			`storage_set "count": abi: malformed message`},
		{"output outside memory", guest(wb.I32Const(namePtr), wb.I32Const(int32(len(name))), wb.I32Const(65536), wb.I32Const(64), wb.Call(wb.StorageGetFunc)),
			"output buffer at 0x10000 (64 bytes) is outside the guest's memory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := storageFeature(t, h, "t.p"+string(rune('a'+i)), tt.wasm)
			f.Builder.Config = nil
			if err := e.Apply(ctx, f); err != nil {
				t.Fatal(err)
			}
			defer e.Delete(ctx, f.FQN)
			for range 2 { // the broken instance is discarded; the next one fails the same way
				_, err := e.Ingest(ctx, "t.rows", []engine.Row{{"id": engine.String("a")}})
				if !errors.Is(err, host.ErrTrap) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want ErrTrap saying %q", err, tt.msg)
				}
			}
		})
	}

	// During _initialize there is no call: the module is refused when applied.
	init := wb.StorageGuest(abi.Version12, abi.ExportProgram, func(m *wb.Module) uint32 {
		m.Data(namePtr, []byte(name))
		m.ExportFunc("_initialize", m.Func(wb.FuncType{}, nil,
			wb.I32Const(namePtr), wb.I32Const(int32(len(name))), wb.Call(wb.StorageClearFunc), wb.Drop()))
		return m.Func(wb.ProgramType, nil, wb.OKResult())
	})
	err := e.Apply(ctx, storageFeature(t, h, "t.init", init))
	if !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), "osprey.storage_clear called outside a program or middleware call") {
		t.Errorf("storage during _initialize: %v", err)
	}
}

// The velocity example: seconds since the card's previous transaction, from its storage.
func TestVelocityExample(t *testing.T) {
	h := newHost(t)
	e, clk := storageEngine(t, h)
	clk.set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	loadExamples(t, h, e)
	ctx := context.Background()
	// The example's own rows, as JSON delivers them (ts an RFC 3339 string).
	data, err := os.ReadFile("../examples/velocity/transactions.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var rows []engine.Row
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		row, err := engine.RowFromMap(m)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	res, err := e.Ingest(ctx, "velocity.transactions", rows)
	// Each card's first transaction has no interval: since_last skips 2 of the 5 rows. (The
	// counts are the example's features' together: velocity.session_txns writes every row.)
	if err != nil || res.Written != 3+5 || res.Skipped != 2 {
		t.Fatalf("ingest = %+v, %v", res, err)
	}
	since := func(card string) (float64, bool) {
		t.Helper()
		got, err := e.Get(ctx, "velocity.since_last", engine.Keys{"card_id": card})
		if err != nil {
			t.Fatal(err)
		}
		return got.Value.Float(), got.Found()
	}
	if got, _ := since("c1"); got != 180 {
		t.Errorf("c1 = %v, want 180 (09:00:45 to 09:03:45)", got)
	}
	if got, _ := since("c2"); got != 3600 {
		t.Errorf("c2 = %v, want 3600", got)
	}
	row := func(card string, ts time.Time) engine.Row {
		return engine.Row{"card_id": engine.String(card), "ts": engine.Timestamp(ts)}
	}
	// A transaction older than the last one seen yields nothing and leaves last_seen.
	t0 := time.Date(2026, 3, 1, 9, 3, 45, 0, time.UTC)
	if res, err := e.Ingest(ctx, "velocity.transactions", []engine.Row{row("c1", t0.Add(-time.Minute))}); err != nil || res.Skipped != 1 {
		t.Fatalf("late row: %+v, %v", res, err)
	}
	if _, err := e.Ingest(ctx, "velocity.transactions", []engine.Row{row("c1", t0.Add(10*time.Second))}); err != nil {
		t.Fatal(err)
	}
	if got, _ := since("c1"); got != 10 {
		t.Errorf("c1 after a late row = %v, want 10", got)
	}
	// last_seen expires 720h after it was written (on the server's clock).
	clk.advance(721 * time.Hour)
	if res, err := e.Ingest(ctx, "velocity.transactions", []engine.Row{row("c1", clk.Now())}); err != nil || res.Skipped != 1 {
		t.Fatalf("after 721h: %+v, %v (want no interval: last_seen expired)", res, err)
	}
}

// wantRefusedAsMiddleware checks that the module ref is refused, with refused in the error,
// as a middleware: when resolved, when prepared and when applied on a feature of e.
func wantRefusedAsMiddleware(t *testing.T, h *host.Host, e *engine.Engine, ref, refused string) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.ResolveMiddleware(ctx, &engine.Feature{FQN: "t.mw"}, engine.MiddlewareRef{Name: "m", Module: ref}); !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), refused) {
		t.Errorf("resolve: %v, want %q", err, refused)
	}
	f := &engine.Feature{FQN: "t.plain", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless},
		Middlewares: []engine.MiddlewareRef{{Name: "m", Module: ref, Stages: []engine.Stage{engine.StagePreSet}}}}
	if err := h.Prepare(ctx, f); err == nil || !strings.Contains(err.Error(), "spec.middlewares[0] (m)") || !strings.Contains(err.Error(), refused) {
		t.Errorf("prepare: %v", err)
	}
	if err := e.Apply(ctx, f); !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), refused) {
		t.Errorf("apply: %v", err)
	}
}
