;; class: stop checks / an Extism plugin that calls the host for ever: alloc and free of a
;;        kernel block in a loop that never ends
;; applied as: plugin hostile.plugin_hostcall_loop, its function `spin` the connector of an
;;             on-request feature
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound (host
;;           functions refuse to run once the call is stopped)
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "free" (func $free (param i64)))
  (func (export "spin") (result i32)
    (loop $forever
      (call $free (call $alloc (i64.const 64)))
      (br $forever))
    (i32.const 0)))
