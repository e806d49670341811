;; class: bounded logs / an Extism plugin failing with an error message (error_set) that
;;        holds a newline, a carriage return, an ANSI escape and a fake JSON log line of
;;        the server's, then returning 1 (`reject`) or trapping (`reject_trap`: the host
;;        then adds the plugin's message to the trap's, and the server logs the Internal
;;        error at ERROR)
;; applied as: plugin hostile.plugin_error_spoof: its function `reject` a preSet middleware
;;             of a sourceless feature; plugin hostile.plugin_error_spoof_trap: its function
;;             `reject_trap` the connector of an on-request feature
;; expected: Set fails FailedPrecondition with the plugin's message, naming the feature; Get
;;           fails Internal ("unreachable") with it; no line of the server's log reads as
;;           the plugin's fake one
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (memory (export "memory") 1)
  ;; the message, 93 bytes
  (data (i32.const 0) "spoofed-rejection\n{\"time\":\"2000-01-01T00:00:00Z\",\"level\":\"ERROR\",\"msg\":\"spoofed-error\"}\0d\1b[2K\n")

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

  (func (export "reject") (result i32)
    (call $error_set (call $block (i32.const 0) (i32.const 93)))
    (i32.const 1))

  (func (export "reject_trap") (result i32)
    (call $error_set (call $block (i32.const 0) (i32.const 93)))
    (unreachable)))
