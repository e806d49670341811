;; class: output / an Extism plugin whose output is a JSON bomb: {"value": followed by
;;        1 000 000 '[' (just under the 1 MiB output cap), nested far deeper than any
;;        decoder should follow
;; applied as: plugin hostile.plugin_json_depth: its function `bomb` the connector of an
;;             on-request feature
;; expected: Get fails FailedPrecondition (the output is not {"value": …}) naming the
;;           feature, fast; the host's memory and stack are unharmed
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 16)
  (data (i32.const 0) "{\"value\":") ;; 9 bytes

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

  (func (export "bomb") (result i32)
    (memory.fill (i32.const 9) (i32.const 0x5b) (i32.const 1000000)) ;; [
    (call $output (i32.const 0) (i32.const 1000009))
    (i32.const 0)))
