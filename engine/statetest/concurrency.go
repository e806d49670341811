package statetest

import (
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

const (
	workers = 8
	perWork = 500
)

// parallel runs fn(worker) on workers goroutines and waits for them.
func parallel(fn func(w int)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { fn(w) })
	}
	wg.Wait()
}

func testConcurrentIncr(e *env) {
	i := e.feature("concurrent_incr", engine.PrimitiveInt)
	fl := e.feature("concurrent_incr_float", engine.PrimitiveFloat)
	k := e.keys(i, "hot")
	results := make([][]int64, workers)
	errs := make(chan error, workers)
	parallel(func(w int) {
		for range perWork {
			v, err := e.st.Incr(e.ctx, i, k, engine.Int(1), time.Now())
			if err != nil {
				errs <- err
				return
			}
			results[w] = append(results[w], v.Int())
			if _, err := e.st.Incr(e.ctx, fl, k, engine.Float(0.5), time.Now()); err != nil {
				errs <- err
				return
			}
		}
	})
	close(errs)
	for err := range errs {
		e.Fatalf("concurrent Incr: %v", err)
	}
	v, _, _ := e.get(i, k, 0)
	if v.Int() != workers*perWork {
		e.Errorf("int total = %v, want %d", v, workers*perWork)
	}
	v, _, _ = e.get(fl, k, 0)
	if v.Float() != workers*perWork*0.5 {
		e.Errorf("float total = %v, want %v", v, workers*perWork*0.5)
	}
	// Every Incr returned a distinct intermediate total: each saw all the ones before it.
	all := slices.Concat(results...)
	slices.Sort(all)
	for n, got := range all {
		if got != int64(n+1) {
			e.Fatalf("Incr results are not 1…%d: %d at position %d", workers*perWork, got, n)
		}
	}
}

func testConcurrentWindowAdd(e *env) {
	f := e.feature("concurrent_window", engine.PrimitiveFloat, windowed(time.Minute, time.Hour))
	k := e.keys(f, "hot")
	ids := []int64{engine.BucketID(e.now, f.Granularity) - 2, engine.BucketID(e.now, f.Granularity) - 1}
	errs := make(chan error, workers)
	parallel(func(w int) {
		for n := range perWork {
			id := ids[n%2]
			if err := e.st.WindowAdd(e.ctx, f, k, float64(w+1), engine.BucketStart(id, f.Granularity).Add(time.Second)); err != nil {
				errs <- err
				return
			}
		}
	})
	close(errs)
	for err := range errs {
		e.Fatalf("concurrent WindowAdd: %v", err)
	}
	bs := e.buckets(f, k, engine.WindowSpan{First: ids[0], Last: ids[1]})
	if len(bs) != 2 {
		e.Fatalf("buckets = %+v, want 2", bs)
	}
	// Each worker w added w+1, perWork/2 times per bucket.
	wantSum := float64(perWork/2) * float64(workers*(workers+1)/2)
	for _, b := range bs {
		if b.Count != workers*perWork/2 || b.Sum != wantSum || b.Min != 1 || b.Max != workers {
			e.Errorf("bucket %d = %+v, want count %d sum %v min 1 max %d", b.ID, b, workers*perWork/2, wantSum, workers)
		}
	}
}

func testConcurrentAppend(e *env) {
	f := e.feature("concurrent_append", engine.PrimitiveIntList)
	k := e.keys(f, "hot")
	const n = 100
	errs := make(chan error, workers)
	parallel(func(w int) {
		for i := range n {
			if _, err := e.st.Append(e.ctx, f, k, engine.IntList([]int64{int64(w*n + i)}), time.Now()); err != nil {
				errs <- err
				return
			}
		}
	})
	close(errs)
	for err := range errs {
		e.Fatalf("concurrent Append: %v", err)
	}
	v, _, found := e.get(f, k, 0)
	if !found || v.Len() != workers*n {
		e.Fatalf("list after %d concurrent appends has %d elements", workers*n, v.Len())
	}
	// Each worker's elements appear once each, in its order.
	next := make([]int, workers)
	for _, x := range v.Ints() {
		w, i := int(x)/n, int(x)%n
		if next[w] != i {
			e.Fatalf("worker %d's element %d appears where %d was due", w, i, next[w])
		}
		next[w]++
	}
}

func testConcurrentEntities(e *env) {
	f := e.feature("concurrent_entities", engine.PrimitiveString)
	errs := make(chan error, workers)
	parallel(func(w int) {
		for i := range perWork / 5 {
			k := strconv.Itoa(w) + "-" + strconv.Itoa(i)
			want := engine.String(k)
			if _, err := e.st.Set(e.ctx, f, k, want, time.Now()); err != nil {
				errs <- err
				return
			}
			v, _, found, err := e.st.Get(e.ctx, f, k, 0)
			if err != nil {
				errs <- err
				return
			}
			if !found || !v.Equal(want) {
				errs <- errors.New("entity " + strconv.Quote(k) + " read back " + v.String())
				return
			}
		}
	})
	close(errs)
	for err := range errs {
		e.Errorf("concurrent entities: %v", err)
	}
}
