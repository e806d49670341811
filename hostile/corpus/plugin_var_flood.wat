;; class: memory / an Extism plugin setting plugin variables (var_set) without end: 4 KiB
;;        values under new names, which the host keeps across calls
;; applied as: plugin hostile.plugin_var_flood: its function `vars` the connector of an
;;             on-request feature
;; expected: Get fails ResourceExhausted (the variables over the host's cap,
;;           extism.MaxVarBytes: 64 KiB) naming the feature, at once, on every call; the
;;           host's memory does not grow over the calls
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (func (export "vars") (result i32)
    (local $i i64)
    (local $name i64)
    (loop $more
      (local.set $name (call $alloc (i64.const 8)))
      (call $store_u64 (local.get $name) (local.get $i))
      (call $var_set (local.get $name) (call $alloc (i64.const 4096)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $more))
    (i32.const 0)))
