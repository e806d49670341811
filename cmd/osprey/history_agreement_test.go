package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/manifest"
	historyfile "github.com/osprey-ml/osprey/plugins/historystore/file"
	notifiermem "github.com/osprey-ml/osprey/plugins/notifier/memory"
	statemem "github.com/osprey-ml/osprey/plugins/state/memory"
)

// agreementManifests are the features of TestExportAgreesWithOnline, one file each. The
// engine is given the features these manifests load to, and the export reads the same
// files with -f: both sides have the same descriptors by construction. The counter has
// other keys than the others, so that the export joins two keysets.
var agreementManifests = map[string]string{
	"limit.yaml": `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: limit, namespace: agree}
spec:
  primitive: float
  freshness: 10m
  staleness: 1h
  keys: [card_id]
`,
	"logins.yaml": `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: logins, namespace: agree}
spec:
  primitive: int
  freshness: 5m
  staleness: 30m
  keys: [card_id, device]
`,
	"amount.yaml": `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: amount, namespace: agree}
spec:
  primitive: float
  freshness: 1m
  staleness: 10m
  keys: [card_id]
  builder:
    aggr: [sum, count, min, max, avg]
    aggrGranularity: 1m
`,
}

// agreementSelectors are the export's columns: a scalar, three aggregations of the window,
// the int counter and the whole window (a JSON object in CSV, a group in Parquet).
var agreementSelectors = []string{"agree.limit", "agree.amount+sum", "agree.amount+avg", "agree.amount+max", "agree.logins", "agree.amount"}

// agreementRow is one entity row of the export and what Engine.Get answered for it, one
// value per selector (Null when it found nothing).
type agreementRow struct {
	at           time.Time
	card, device string
	want         []engine.Value
}

func (r *agreementRow) String() string {
	return fmt.Sprintf("card_id=%s device=%s as of %s", r.card, r.device, r.at.Format(time.RFC3339Nano))
}

// TestExportAgreesWithOnline replays a pseudo-random stream of writes through an engine whose
// historian writes to a file history, records at about 150 instants what Engine.Get answered
// for a few selectors and entities, and checks that osprey history export --as-written of
// those rows, in CSV and in Parquet, holds exactly those answers: floats bit for bit, no value
// where Get found none.
func TestExportAgreesWithOnline(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	historyDir := filepath.Join(dir, "history")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range agreementManifests {
		if err := os.WriteFile(filepath.Join(manifests, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := manifest.Load(manifests)
	if err != nil {
		t.Fatal(err)
	}

	// The engine over an in-memory State and notifier, on a clock the test moves, with a
	// historian writing to the file store in historyDir.
	start := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC) // the replay crosses midnight
	var nowNanos atomic.Int64
	nowNanos.Store(start.UnixNano())
	clock := func() time.Time { return time.Unix(0, nowNanos.Load()).UTC() }
	setClock := func(at time.Time) { nowNanos.Store(at.UnixNano()) }
	quiet := slog.New(slog.DiscardHandler)
	n, err := notifiermem.New(notifiermem.WithGroups(historian.DefaultGroup), notifiermem.WithRetryDelay(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// No janitor: it runs on real time, and would make the test depend on it.
	st := statemem.New(statemem.WithClock(clock), statemem.WithJanitorInterval(0))
	eng := engine.New(st, engine.WithNotifier(n), engine.WithClock(clock), engine.WithLogger(quiet))
	store, err := historyfile.New(historyDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(); st.Close(); n.Close(); store.Close() })
	applied := 0
	for _, m := range ms {
		if m.Feature == nil {
			continue
		}
		if err := eng.Apply(ctx, m.Feature); err != nil {
			t.Fatal(err)
		}
		applied++
	}
	if applied != len(agreementManifests) {
		t.Fatalf("%d features loaded from the manifests, want %d", applied, len(agreementManifests))
	}
	// FlushAge is on real time: the historian writes when the test flushes it.
	h, err := historian.New(historian.Config{Engine: eng, Notifier: n, Storage: store, Logger: quiet, Now: clock, FlushAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(rctx) }()
	stopped := false
	stop := func() error { stopped = true; cancel(); return <-runErr }
	t.Cleanup(func() {
		if !stopped {
			_ = stop()
		}
	})

	rng := rand.New(rand.NewPCG(20261201, 2000))
	cards := []string{"c0", "c1", "c2", "c3", "c4"}
	devices := []string{"phone", "web"}
	durIn := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	const writes = 2000
	var published int64
	counts := map[string]int{}
	write := func(op engine.Op, fqn string, keys engine.Keys, v any, ts time.Time) {
		t.Helper()
		res, err := eng.Write(ctx, op, fqn, keys, v, ts)
		switch {
		case errors.Is(err, engine.ErrOutOfWindow):
			counts["refused"]++ // not written, not recorded
			return
		case err != nil:
			t.Fatalf("%s %s %v %v at %v: %v", op, fqn, keys, v, ts, err)
		}
		published++
		counts[op.String()+" "+fqn]++
		if res.Superseded() {
			counts["superseded"]++
		}
	}
	var rows []*agreementRow
	// observe records what Get answers at an instant for every card, c5 (only ever given a
	// limit) and c9 (never written), each with a device for the counter.
	observe := func(at time.Time) {
		saved := clock()
		setClock(at)
		defer setClock(saved)
		for _, card := range append(slices.Clone(cards), "c5", "c9") {
			r := &agreementRow{at: at, card: card, device: devices[rng.IntN(len(devices))]}
			for _, sel := range agreementSelectors {
				keys := engine.Keys{"card_id": card}
				if strings.HasPrefix(sel, "agree.logins") {
					keys["device"] = r.device
				}
				res, err := eng.Get(ctx, sel, keys)
				if err != nil {
					t.Fatalf("Get %s %v at %v: %v", sel, keys, at, err)
				}
				r.want = append(r.want, res.Value)
			}
			rows = append(rows, r)
		}
	}

	for i := range writes {
		now := clock()
		card := cards[rng.IntN(len(cards))]
		// Event times: mostly just before now, some late (out of order), some a little
		// ahead (a client's clock ahead of the host's).
		ts := func(late time.Duration) time.Time {
			switch p := rng.IntN(100); {
			case p < 65:
				return now.Add(-durIn(0, 30*time.Second))
			case p < 92:
				return now.Add(-durIn(0, late))
			default:
				return now.Add(durIn(0, 5*time.Second))
			}
		}
		switch p := rng.IntN(100); {
		case p < 27:
			write(engine.OpSet, "agree.limit", engine.Keys{"card_id": card}, rng.Float64()*1e3, ts(2*time.Hour))
		case p < 30:
			write(engine.OpSet, "agree.limit", engine.Keys{"card_id": "c5"}, rng.Float64()*1e3, ts(2*time.Hour))
		case p < 50:
			keys := engine.Keys{"card_id": card, "device": devices[rng.IntN(len(devices))]}
			write(engine.OpIncr, "agree.logins", keys, rng.IntN(5)+1, ts(10*time.Minute))
		case p < 52:
			keys := engine.Keys{"card_id": card, "device": devices[rng.IntN(len(devices))]}
			write(engine.OpSet, "agree.logins", keys, rng.IntN(100), ts(time.Hour))
		default:
			write(engine.OpUpdate, "agree.amount", engine.Keys{"card_id": card}, rng.Float64()*200-50, ts(25*time.Minute))
		}
		// The next write is at now + advance; observe in [now, now + advance), now itself
		// (right after the write) a quarter of the time.
		advance := durIn(time.Millisecond, 30*time.Second)
		if rng.IntN(100) == 0 {
			advance = durIn(40*time.Minute, 2*time.Hour) // let values expire
		}
		if i%13 == 0 {
			at := now
			if rng.IntN(4) != 0 {
				at = now.Add(time.Duration(rng.Int64N(int64(advance))))
			}
			observe(at)
		}
		setClock(now.Add(advance))
	}
	end := clock()
	deadline := time.Now().Add(time.Minute)
	for h.Stats().Received < published {
		if time.Now().After(deadline) {
			t.Fatalf("the historian received %d of the %d notifications", h.Stats().Received, published)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("historian Run = %v", err)
	}
	if s := h.Stats(); s.Pending != 0 || s.Unencodable != 0 || s.FailedPuts != 0 || s.Records < published {
		t.Fatalf("historian stats %+v after %d writes", s, published)
	}
	t.Logf("%d writes (%v) from %v to %v, %d entity rows at %d instants", published, counts, start, end, len(rows), len(rows)/(len(cards)+2))
	if counts["superseded"] == 0 || counts["refused"] == 0 || end.Format(time.DateOnly) == start.Format(time.DateOnly) {
		t.Fatalf("the stream does not exercise superseded writes, refused ones and two dates: %v, until %v", counts, end)
	}
	found := make([]int, len(agreementSelectors))
	total := 0
	for _, r := range rows {
		for i, v := range r.want {
			if !v.IsNull() {
				found[i]++
				total++
			}
		}
	}
	t.Logf("Get found values (of %d rows): %v for %q", len(rows), found, agreementSelectors)
	for i, sel := range agreementSelectors {
		if found[i] < len(rows)/5 || found[i] == len(rows) {
			t.Fatalf("%s: Get found a value for %d of %d rows: want both values and nulls, many values", sel, found[i], len(rows))
		}
	}

	// The entity rows, each instant to the nanosecond.
	entities := filepath.Join(dir, "rows.csv")
	var b strings.Builder
	cw := csv.NewWriter(&b)
	_ = cw.Write([]string{"card_id", "device", "timestamp"})
	for _, r := range rows {
		_ = cw.Write([]string{r.card, r.device, r.at.Format(time.RFC3339Nano)})
	}
	cw.Flush()
	if err := os.WriteFile(entities, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	export := func(t *testing.T, out, format string) {
		t.Helper()
		code, stdout, errOut := runCLI(t, "", "history", "export", "--as-written", "--history", "file", "--history-config", "dir="+historyDir,
			"-f", manifests, "--entities", entities, "--features", strings.Join(agreementSelectors, ","), "--out", out, "--format", format)
		if code != 0 {
			t.Fatalf("export --format %s: exit %d: %s", format, code, errOut)
		}
		want := fmt.Sprintf("exported %d rows × %d features to %s (%d values, %d null)\n", len(rows), len(agreementSelectors), out,
			total, len(rows)*len(agreementSelectors)-total)
		if stdout != want {
			t.Errorf("export --format %s: stdout %q, want %q", format, stdout, want)
		}
	}
	var mismatches int
	mismatch := func(t *testing.T, format string, r *agreementRow, sel string, got string) {
		t.Helper()
		if mismatches++; mismatches <= 40 {
			t.Errorf("%s, %s %s: online %s, export %s", format, sel, r, onlineText(r.want[slices.Index(agreementSelectors, sel)]), got)
		}
	}

	t.Run("csv", func(t *testing.T) {
		out := filepath.Join(dir, "out.csv")
		export(t, out, "csv")
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if header := append([]string{"card_id", "device", "timestamp"}, agreementSelectors...); len(recs) == 0 || !slices.Equal(recs[0], header) {
			t.Fatalf("header %q, want %q", recs[:min(1, len(recs))], header)
		}
		if len(recs)-1 != len(rows) {
			t.Fatalf("%d rows, want %d", len(recs)-1, len(rows))
		}
		for i, r := range rows {
			rec := recs[i+1]
			if rec[0] != r.card || rec[1] != r.device || rec[2] != r.at.Format(time.RFC3339Nano) {
				t.Fatalf("row %d: entity columns %q, want %s", i+1, rec[:3], r)
			}
			for j, sel := range agreementSelectors {
				if got := rec[3+j]; !csvCellEqual(r.want[j], got) {
					mismatch(t, "csv", r, sel, strconv.Quote(got))
				}
			}
		}
	})

	t.Run("parquet", func(t *testing.T) {
		out := filepath.Join(dir, "out.parquet")
		export(t, out, "parquet")
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		pf, err := parquet.OpenFile(f, fi.Size())
		if err != nil {
			t.Fatal(err)
		}
		// The leaf columns by path: an entity column or a selector's is [name], a window's
		// aggregation [selector, aggregation].
		leaf := map[string]int{}
		paths := pf.Schema().Columns()
		for i, p := range paths {
			leaf[strings.Join(p, "/")] = i
		}
		col := func(path ...string) int {
			t.Helper()
			c, ok := leaf[strings.Join(path, "/")]
			if !ok {
				t.Fatalf("no column %q in %q", path, paths)
			}
			return c
		}
		read := 0
		vals := make([]parquet.Value, len(paths))
		buf := make([]parquet.Row, 256)
		for _, g := range pf.RowGroups() {
			rr := g.Rows()
			for {
				k, err := rr.ReadRows(buf)
				for _, row := range buf[:k] {
					if read >= len(rows) {
						t.Fatalf("more than the %d rows written", len(rows))
					}
					r := rows[read]
					read++
					for c := range vals {
						vals[c] = parquet.NullValue()
					}
					for _, v := range row {
						vals[v.Column()] = v
					}
					if card, device, at := string(vals[col("card_id")].ByteArray()), string(vals[col("device")].ByteArray()),
						string(vals[col("timestamp")].ByteArray()); card != r.card || device != r.device || at != r.at.Format(time.RFC3339Nano) {
						t.Fatalf("row %d: entity columns %s %s %s, want %s", read, card, device, at, r)
					}
					for j, sel := range agreementSelectors {
						want := r.want[j]
						var got []parquet.Value
						var names []string
						if want.Kind() == engine.KindWindow || sel == "agree.amount" {
							for _, a := range engine.AllAggrs.Fns() {
								got = append(got, vals[col(sel, a.String())])
								names = append(names, a.String())
							}
						} else {
							got = []parquet.Value{vals[col(sel)]}
						}
						if !parquetCellEqual(want, got) {
							mismatch(t, "parquet", r, sel, parquetCellText(names, got))
						}
					}
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			rr.Close()
		}
		if read != len(rows) {
			t.Fatalf("%d rows, want %d", read, len(rows))
		}
	})
	if mismatches > 40 {
		t.Errorf("… %d disagreements in all", mismatches)
	}
}

// onlineText prints what Get answered, floats exactly.
func onlineText(v engine.Value) string {
	switch v.Kind() {
	case engine.KindNull:
		return "no value"
	case engine.KindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	}
	return v.String()
}

// csvCellEqual reports whether a CSV cell holds want exactly: empty for Null, an int's
// digits, a float that parses back to the same bits (the export writes strconv's shortest
// representation, which parses back exactly), a window's aggregations as a JSON object of
// such floats.
func csvCellEqual(want engine.Value, cell string) bool {
	switch want.Kind() {
	case engine.KindNull:
		return cell == ""
	case engine.KindInt:
		return cell == strconv.FormatInt(want.Int(), 10)
	case engine.KindFloat:
		x, err := strconv.ParseFloat(cell, 64)
		return err == nil && math.Float64bits(x) == math.Float64bits(want.Float())
	case engine.KindWindow:
		var got map[string]float64
		if err := json.Unmarshal([]byte(cell), &got); err != nil {
			return false
		}
		r := want.Window()
		fns := r.Aggrs.Fns()
		if len(got) != len(fns) {
			return false
		}
		for _, a := range fns {
			x, ok := got[a.String()]
			if !ok || math.Float64bits(x) != math.Float64bits(r.Get(a)) {
				return false
			}
		}
		return true
	}
	return false
}

// parquetCellEqual reports whether a selector's Parquet leaves hold want exactly: null for
// Null, an int64, a double of the same bits, or a window's aggregations in engine.AllAggrs
// order (the feature has them all).
func parquetCellEqual(want engine.Value, got []parquet.Value) bool {
	switch want.Kind() {
	case engine.KindNull:
		for _, v := range got {
			if !v.IsNull() {
				return false
			}
		}
		return true
	case engine.KindInt:
		return len(got) == 1 && got[0].Kind() == parquet.Int64 && got[0].Int64() == want.Int()
	case engine.KindFloat:
		return len(got) == 1 && got[0].Kind() == parquet.Double && math.Float64bits(got[0].Double()) == math.Float64bits(want.Float())
	case engine.KindWindow:
		r := want.Window()
		fns := engine.AllAggrs.Fns()
		if r.Aggrs != engine.AllAggrs || len(got) != len(fns) {
			return false
		}
		for i, a := range fns {
			if got[i].Kind() != parquet.Double || math.Float64bits(got[i].Double()) != math.Float64bits(r.Get(a)) {
				return false
			}
		}
		return true
	}
	return false
}

// parquetCellText prints a selector's Parquet leaves, floats exactly.
func parquetCellText(names []string, vals []parquet.Value) string {
	var parts []string
	for i, v := range vals {
		s := "null"
		switch {
		case v.IsNull():
		case v.Kind() == parquet.Double:
			s = strconv.FormatFloat(v.Double(), 'g', -1, 64)
		case v.Kind() == parquet.Int64:
			s = strconv.FormatInt(v.Int64(), 10)
		default:
			s = v.String()
		}
		if i < len(names) {
			s = names[i] + "=" + s
		}
		parts = append(parts, s)
	}
	if len(names) > 0 {
		return "{" + strings.Join(parts, " ") + "}"
	}
	return strings.Join(parts, " ")
}
