;; class: memory / an Extism plugin declaring 60 000 pages (3.66 GiB) of initial memory, far
;;        more than its spec.limits.memoryPages (16)
;; applied as: plugin hostile.plugin_bigmem (its function `noop` a middleware), alone
;; expected: the apply is refused (the module does not compile or instantiate under the
;;           page limit: ResourceExhausted or InvalidArgument), fast; nothing is allocated
(module
  (memory (export "memory") 60000)
  (func (export "noop") (result i32)
    (i32.const 0)))
