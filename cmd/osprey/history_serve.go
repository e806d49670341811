package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/plugins"
	historylock "github.com/osprey-ml/osprey/plugins/historylock/redis"
	_ "github.com/osprey-ml/osprey/plugins/historystore/file" // "file" history store
	_ "github.com/osprey-ml/osprey/plugins/historystore/s3"   // "s3" history store
)

// historyStoreName is the history store c names (--history): "file" in <data-dir>/history
// by default when there is a data directory, none ("") when there is not or when it says
// "none".
func historyStoreName(c *serveConfig) string {
	switch c.History {
	case "none":
		return ""
	case "":
		if c.DataDir != "" {
			return "file"
		}
		return ""
	}
	return c.History
}

// declareHistoryGroup makes the notifier keep everything for the historian's group from
// the start (its groups config), so that nothing written before the historian first
// subscribes is missed.
func declareHistoryGroup(c *serveConfig, notifierCfg plugins.Config) {
	if historyStoreName(c) == "" {
		return
	}
	sep := ","
	if c.Notifier == "redis" {
		sep = ";"
	}
	if g := notifierCfg["groups"]; g == "" {
		notifierCfg["groups"] = historian.DefaultGroup
	} else {
		notifierCfg["groups"] = g + sep + historian.DefaultGroup
	}
}

// runningHistorian is a historian started by the stack.
type runningHistorian struct {
	h       *historian.Historian
	storage historian.Storage
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startHistorian starts the historian c configures over eng and n, or returns nil when
// history is off. With the redis notifier the replicas elect one writer with a lease in the
// notifier's Redis; otherwise this process is the only writer.
func startHistorian(ctx context.Context, e *env, c *serveConfig, eng *engine.Engine, n engine.Notifier) (*runningHistorian, error) {
	name := historyStoreName(c)
	if name == "" {
		return nil, nil
	}
	cfg, err := parseKV(c.HistoryConfig, "history-config")
	if err != nil {
		return nil, err
	}
	if name == "file" && cfg["dir"] == "" {
		if c.DataDir == "" {
			return nil, errors.New("history-config: the file history store needs dir=PATH (or --data-dir)")
		}
		cfg["dir"] = filepath.Join(c.DataDir, "history")
	}
	storage, err := plugins.NewHistoryStore(ctx, name, cfg)
	if err != nil {
		return nil, err
	}
	hc := historian.Config{Engine: eng, Notifier: n, Storage: storage, Logger: e.log, CollectInterval: c.HistoryCollect}
	if c, ok := n.(interface{ Capacity() int }); ok {
		// A notifier that holds what is unacknowledged in memory (the in-process one)
		// blocks writes once it is full: hold at most three quarters of it, in flushes of
		// an eighth (several run at once).
		hc.MaxPending = max(c.Capacity()*3/4, 1)
		hc.FlushRecords = max(c.Capacity()/8, 1)
	}
	if rc, ok := n.(interface {
		Client() goredis.UniversalClient
	}); ok {
		lock, err := historylock.New(historylock.Config{Client: rc.Client(), Logger: e.log})
		if err != nil {
			storage.Close()
			return nil, err
		}
		hc.Leader = lock
	}
	h, err := historian.New(hc)
	if err != nil {
		storage.Close()
		return nil, fmt.Errorf("history: %w", err)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &runningHistorian{h: h, storage: storage, cancel: cancel}
	r.wg.Go(func() {
		if err := h.Run(hctx); err != nil && !errors.Is(err, context.Canceled) {
			e.log.Error("historian stopped", "error", err)
		}
	})
	e.log.Info("writing history", "store", name)
	return r, nil
}

// stop stops the historian after its final flush and closes its storage.
func (r *runningHistorian) stop() {
	if r == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
	r.storage.Close()
}
