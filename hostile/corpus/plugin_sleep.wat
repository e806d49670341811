;; class: stop / an Extism plugin asking WASI poll_oneoff to sleep for an hour (one relative
;;        clock subscription of 3600 s), then returning {"value":1}
;; applied as: plugin hostile.plugin_sleep, spec.limits.timeout 500ms: its function `nap`
;;             the connector of an on-request feature (feature timeout 5s)
;; expected: the sleep does not hold the call past its bound: Get succeeds at once (the
;;           host's WASI does not really sleep) or fails DeadlineExceeded at the plugin's
;;           timeout, within the call bound
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"value\":1}") ;; 11 bytes
  ;; A subscription (48 bytes) at 64: userdata 1, tag 0 (clock), clock id 1 (monotonic),
  ;; timeout 3600 s in ns (0x0000_0346_30B8_A000), precision 0, flags 0 (relative).
  (data (i32.const 64) "\01\00\00\00\00\00\00\00" "\00\00\00\00\00\00\00\00" "\01\00\00\00\00\00\00\00"
                       "\00\a0\b8\30\46\03\00\00" "\00\00\00\00\00\00\00\00" "\00\00\00\00\00\00\00\00")

  ;; $block copies the n bytes at p of this module's memory into a new kernel block (8
  ;; bytes a host call, then the rest byte by byte) and returns it.
  (func $block (param $p i32) (param $n i32) (result i64)
    (local $blk i64)
    (local $i i32)
    (local.set $blk (call $alloc (i64.extend_i32_u (local.get $n))))
    (block $words
      (loop $word
        (br_if $words (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $n)))
        (call $store_u64 (i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))
          (i64.load (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $word)))
    (block $bytes
      (loop $byte
        (br_if $bytes (i32.ge_u (local.get $i) (local.get $n)))
        (call $store_u8 (i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))
          (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $byte)))
    (local.get $blk))

  ;; $output sets the n bytes at p as the call's output.
  (func $output (param $p i32) (param $n i32)
    (call $output_set (call $block (local.get $p) (local.get $n)) (i64.extend_i32_u (local.get $n))))

  (func (export "nap") (result i32)
    ;; one subscription at 64, its event at 128, the count at 192
    (drop (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 192)))
    (call $output (i32.const 0) (i32.const 11))
    (i32.const 0)))
