;; class: output / an Extism plugin setting a huge output: an 8 MiB kernel block (its first
;;        and last bytes marked), and a 4 GiB - 1 byte one
;; applied as: plugin hostile.plugin_huge_output (default limits: 256 pages, 1 MiB
;;             outputs): its function `huge` the connector of an on-request feature
;;             (entry plugin_huge_output), its function `huge_4g` the same
;;             (entry plugin_huge_output_4g)
;; expected: `huge`: Get fails ResourceExhausted (the output is over spec.limits.outputBytes;
;;           the host does not copy it); `huge_4g`: the kernel cannot allocate the block,
;;           the plugin returns 2: Get fails FailedPrecondition (or ResourceExhausted, or
;;           Internal for a trap); the host's memory is unharmed
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))

  (func $emit (param $n i64) (result i32)
    (local $blk i64)
    (local.set $blk (call $alloc (local.get $n)))
    (if (i64.eqz (local.get $blk))
      (then (return (i32.const 2))))
    (call $store_u8 (local.get $blk) (i32.const 0x48))
    (call $store_u8 (i64.sub (i64.add (local.get $blk) (local.get $n)) (i64.const 1)) (i32.const 0x48))
    (call $output_set (local.get $blk) (local.get $n))
    (i32.const 0))

  (func (export "huge") (result i32)
    (call $emit (i64.const 8388608)))     ;; 8 MiB

  (func (export "huge_4g") (result i32)
    (call $emit (i64.const 4294967295)))) ;; 4 GiB - 1
