;; class: churn / an ordinary Extism connector with a 4 MiB memory it fills when an
;;        instance is made (_initialize), returning {"value": <its Extism config "v">}
;; applied as: plugin hostile.plugin_churn (spec.config {v: N}), its function `value` the
;;             connector of hostile.plugin_churn_feature, applied, replaced and deleted in
;;             a loop by TestPluginChurn (each version under its own bytes: a custom section)
;; expected: every Get returns the config's value of the plugin applied then; memory comes
;;           back once the plugins are deleted: a leak of their runtimes, compiled code,
;;           instances or memories shows within a few dozen iterations
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "load_u8" (func $load_u8 (param i64) (result i32)))
  (memory (export "memory") 64)
  (data (i32.const 0) "{\"value\":") ;; 9 bytes
  (data (i32.const 32) "v")

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

  ;; Touch all 4 MiB, so that a leaked instance's memory is resident too.
  (func (export "_initialize")
    (memory.fill (i32.const 65536) (i32.const 0x43) (i32.const 4128768)))

  (func (export "value") (result i32)
    (local $v i64)
    (local $n i32)
    (local $i i32)
    (local.set $v (call $config_get (call $block (i32.const 32) (i32.const 1))))
    (if (i64.eqz (local.get $v))
      (then (unreachable)))
    (local.set $n (i32.wrap_i64 (call $length (local.get $v))))
    (if (i32.gt_u (local.get $n) (i32.const 20))
      (then (unreachable)))
    (block $copied
      (loop $copy
        (br_if $copied (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store8 (i32.add (i32.const 9) (local.get $i))
          (call $load_u8 (i64.add (local.get $v) (i64.extend_i32_u (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (i32.store8 (i32.add (i32.const 9) (local.get $n)) (i32.const 125)) ;; }
    (call $output (i32.const 0) (i32.add (i32.const 10) (local.get $n)))
    (i32.const 0)))
