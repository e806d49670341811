;; bigmem: declares 60000 pages (60000 x 64 KiB = 3.66 GiB) of initial memory. A host with
;; a page limit below that (go-sdk Manifest.Memory.MaxPages) fails to compile or instantiate
;; it; without one the memory is allocated when the module is instantiated. Export `noop`
;; returns 0 without touching the memory.
(module
  (memory (export "memory") 60000)
  (func (export "noop") (result i32)
    (i32.const 0)))
