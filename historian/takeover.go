package historian

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// A leader that dies between writing an object and acknowledging its notifications leaves
// them to the next leader, which would write them again under its own fence. To keep every
// batch under one fence, a new leader first reads what earlier leaders wrote in the last
// takeoverWindow (objects of today and yesterday, by name: time and fence) and skips, for
// takeoverMemory, the writes it finds there again. The window covers a dead leader's last
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

// recall reads the writes of earlier fences' recent objects into h.written.
func (h *Historian) recall(ctx context.Context, fence int64) {
	now := h.now().UTC()
	since := now.Add(-takeoverWindow)
	seen := map[string]struct{}{}
	objects := 0
	for _, f := range h.cfg.Engine.Features() {
		for _, d := range []time.Time{now, now.Add(-24 * time.Hour)} {
			infos, err := h.cfg.Storage.List(ctx, "fqn="+f.FQN+"/date="+d.Format(time.DateOnly)+"/")
			if err != nil {
				h.log.LogAttrs(ctx, slog.LevelWarn, "historian: could not read the last leader's objects; what it wrote and did not acknowledge is written again",
					slog.Any("error", err))
				return
			}
			for _, info := range infos {
				t, of, ok := nameTimeFence(info.Key)
				if !ok || of >= fence || t.Before(since) {
					continue
				}
				recs, err := h.readObject(ctx, info.Key)
				if err != nil {
					h.log.LogAttrs(ctx, slog.LevelWarn, "historian: could not read an object of the last leader", slog.String("key", info.Key), slog.Any("error", err))
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
