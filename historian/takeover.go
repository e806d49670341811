package historian

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// A leader that dies between writing an object and acknowledging its notifications leaves
// them to the next leader, which would write them again under its own fence. To keep every
// batch under one fence, a new leader first reads what earlier leaders wrote in the last
// takeoverWindow (the objects their flush manifests of today and yesterday name) and skips,
// for takeoverMemory, the writes it finds there again. The window covers a dead leader's last
// objects not yet acknowledged: its lease's lifetime plus a Put's timeout, generously.

const (
	// takeoverWindow is how far back a new leader looks for objects of earlier fences.
	takeoverWindow = 10 * time.Minute
	// takeoverMemory is how long a new leader remembers them.
	takeoverMemory = 10 * time.Minute
	// takeoverMaxRecords bounds what a new leader remembers.
	takeoverMaxRecords = 5_000_000
)

// writeID identifies a write record: delivered twice, a notification gives the same ID.
func writeID(r *Record) string {
	var b strings.Builder
	b.Grow(len(r.FQN) + len(r.EncodedKeys) + 48)
	b.WriteString(r.FQN)
	b.WriteByte(0)
	b.WriteString(r.EncodedKeys)
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(int(r.Op)))
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(r.EventTime.UnixNano(), 36))
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(r.WriteTime.UnixNano(), 36))
	if r.Superseded {
		b.WriteByte('s')
	}
	return b.String()
}

// nameTimeFence parses the time and fence of an object name the historian wrote
// (<time>-<fence>-<run>-<seq>.parquet); ok is false for other names.
func nameTimeFence(key string) (time.Time, int64, bool) {
	name := key[strings.LastIndexByte(key, '/')+1:]
	parts := strings.SplitN(name, "-", 3)
	if len(parts) < 3 {
		return time.Time{}, 0, false
	}
	t, err := time.Parse("20060102T150405.000000000Z", parts[0])
	if err != nil {
		return time.Time{}, 0, false
	}
	fence, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return time.Time{}, 0, false
	}
	return t, fence, true
}

// FlushManifestPrefix is where a leader records, per flush, the objects it wrote:
// _flushes/date=<write date>/<time>-<fence>-<run>-<seq>.json holding {"fence", "objects"}.
// Objects are partitioned by event date, which a late or early write can put anywhere; the
// manifests, by write date, let a new leader find an earlier leader's last objects.
const FlushManifestPrefix = "_flushes/"

type flushManifest struct {
	Fence   int64    `json:"fence"`
	Objects []string `json:"objects"`
}

// putFlushManifest records the objects a flush wrote. It is best effort: the objects are
// written, and a manifest that fails only means a new leader might write them again.
func (h *Historian) putFlushManifest(ctx context.Context, objs []*object) {
	if len(objs) == 0 {
		return
	}
	m := flushManifest{Fence: h.fence.Load()}
	for _, o := range objs {
		m.Objects = append(m.Objects, o.key)
	}
	body, _ := json.Marshal(m)
	name := strings.TrimSuffix(objs[0].key[strings.LastIndexByte(objs[0].key, '/')+1:], ".parquet")
	key := FlushManifestPrefix + "date=" + h.now().UTC().Format(time.DateOnly) + "/" + name + ".json"
	pctx, cancel := context.WithTimeout(ctx, h.cfg.PutTimeout)
	defer cancel()
	if err := h.cfg.Storage.Put(pctx, key, body); err != nil {
		h.log.LogAttrs(ctx, slog.LevelWarn, "historian: could not record a flush's objects; a new leader may write them again",
			slog.String("key", key), slog.Any("error", err))
	}
}

// recall reads the writes of the objects earlier fences wrote in the last takeoverWindow
// (found through their flush manifests) into h.written.
func (h *Historian) recall(ctx context.Context, fence int64) {
	now := h.now().UTC()
	since := now.Add(-takeoverWindow)
	seen := map[string]struct{}{}
	objects := 0
	for _, d := range []time.Time{now.Add(-24 * time.Hour), now} {
		infos, err := h.cfg.Storage.List(ctx, FlushManifestPrefix+"date="+d.Format(time.DateOnly)+"/")
		if err != nil {
			h.log.LogAttrs(ctx, slog.LevelWarn, "historian: could not read the last leader's flushes; what it wrote and did not acknowledge is written again",
				slog.Any("error", err))
			return
		}
		for _, info := range infos {
			t, of, ok := nameTimeFence(strings.TrimSuffix(info.Key, ".json"))
			if !ok || of >= fence || t.Before(since) {
				continue
			}
			var m flushManifest
			if err := h.readJSON(ctx, info.Key, &m); err != nil {
				h.log.LogAttrs(ctx, slog.LevelWarn, "historian: could not read a flush manifest", slog.String("key", info.Key), slog.Any("error", err))
				continue
			}
			for _, key := range m.Objects {
				recs, err := h.readObject(ctx, key)
				if err != nil {
					h.log.LogAttrs(ctx, slog.LevelWarn, "historian: could not read an object of the last leader", slog.String("key", key), slog.Any("error", err))
					continue
				}
				objects++
				for i := range recs {
					if recs[i].Kind == KindWrite && len(seen) < takeoverMaxRecords {
						seen[writeID(&recs[i])] = struct{}{}
					}
				}
			}
		}
	}
	if len(seen) > 0 {
		h.mu.Lock()
		h.written, h.writtenUntil = seen, time.Now().Add(takeoverMemory)
		h.mu.Unlock()
		h.recalling.Store(true)
	}
	if objects > 0 {
		h.log.LogAttrs(ctx, slog.LevelInfo, "historian: read the last leader's recent objects, to skip what it wrote and did not acknowledge",
			slog.Int("objects", objects), slog.Int("writes", len(seen)))
	}
}

// readJSON decodes a small stored JSON object (at most 16 MiB).
func (h *Historian) readJSON(ctx context.Context, key string, v any) error {
	o, err := h.cfg.Storage.Open(ctx, key)
	if err != nil {
		return err
	}
	defer o.Close()
	if o.Size() > 16<<20 {
		return fmt.Errorf("%s: %d bytes, more than a flush manifest holds", key, o.Size())
	}
	return json.NewDecoder(io.NewSectionReader(o, 0, o.Size())).Decode(v)
}

// readObject decodes one stored object.
func (h *Historian) readObject(ctx context.Context, key string) ([]Record, error) {
	o, err := h.cfg.Storage.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	return DecodeParquet(o, o.Size())
}

// alreadyWritten reports whether an earlier leader wrote r (see recall).
func (h *Historian) alreadyWritten(r *Record) bool {
	if !h.recalling.Load() {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.written == nil {
		return false
	}
	if time.Now().After(h.writtenUntil) {
		h.written = nil
		h.recalling.Store(false)
		return false
	}
	_, ok := h.written[writeID(r)]
	return ok
}
