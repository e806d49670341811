package server

import "net/http"

// Each request runs on a goroutine of its own, which net/http starts with a small stack
// (the runtime's average; most goroutines are shallow). A call goes ~40 frames deep through
// HTTP/2, connect, the interceptors, the engine and go-redis, so the stack used to double
// several times under each request, each time copying what it held by then. withGrownStack
// grows it once, at the top of the request, where there is almost nothing to copy
// (RATIONALE.md, "Grow the stack once, at the top"; the numbers in BENCHMARKS.md).

// requestStack is the size of growStack's frame: the stack grows to the next power of two
// that holds it and what is in use (16 KiB), which the runtime takes from its per-P caches;
// a 16 KiB frame would make a 32 KiB stack, which it does not.
const requestStack = 8 << 10

// grownStack serves next on a stack grown by requestStack.
type grownStack struct{ next http.Handler }

func withGrownStack(next http.Handler) http.Handler { return grownStack{next} }

func (g grownStack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	growStack()
	g.next.ServeHTTP(w, r)
}

// stackTouched is false and stays so (growStack would only write it were it true): it keeps
// the compiler from proving growStack's frame unused and dropping it.
var stackTouched bool

// growStack has a frame of requestStack bytes: calling it makes the runtime grow the
// goroutine's stack to hold it, if it is not that big already.
//
//go:noinline
func growStack() {
	var buf [requestStack]byte
	if stackTouched {
		for i := range buf {
			buf[i] = byte(i)
		}
		stackTouched = buf[0] == buf[len(buf)-1]
	}
}
