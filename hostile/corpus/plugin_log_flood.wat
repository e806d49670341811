;; class: bounded logs / an Extism plugin flooding the Extism log functions: an 8 KiB line,
;;        then 2 000 rounds of log_error, log_warn, log_info and log_debug of a 213-byte
;;        message holding newlines, a carriage return, an ANSI escape, a NUL, a byte that is
;;        not UTF-8 and two fake JSON log lines of the server's (level, msg, component, time,
;;        plugin) — 8 001 lines asked for in one call
;; applied as: plugin hostile.plugin_log_flood, spec.limits.timeout 10s: its function
;;             `flood` a preSet middleware of a sourceless feature, returning
;;             {"value":null} (the value unchanged)
;; expected: Set succeeds; the server logs a few of the plugin's lines (rate-limited),
;;           each one JSON object marked as the plugin's (plugin=hostile.plugin_log_flood),
;;           cut near 1 KiB, with no top-level level, msg, component, time or plugin that
;;           the plugin chose and no repeated key
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "log_error" (func $log_error (param i64)))
  (import "extism:host/env" "log_warn" (func $log_warn (param i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (import "extism:host/env" "log_debug" (func $log_debug (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"value\":null}") ;; 14 bytes
  ;; the message, 213 bytes
  (data (i32.const 64) "spoofed-plugin\n{\"time\":\"2000-01-01T00:00:00Z\",\"level\":\"ERROR\",\"msg\":\"spoofed-plugin-line\",\"component\":\"server\",\"plugin\":\"spoofed-owner\"}\0d\1b[2K\00\ff\n{\"level\":\"ERROR\",\"msg\":\"spoofed-again\",\"time\":\"2000-01-01T00:00:00Z\"}")

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

  (func (export "flood") (result i32)
    (local $i i32)
    ;; An 8 KiB line of 'A's, first, so that the rate limit lets it through.
    (memory.fill (i32.const 4096) (i32.const 0x41) (i32.const 8192))
    (call $log_error (call $block (i32.const 4096) (i32.const 8192)))
    (loop $again
      (call $log_error (call $block (i32.const 64) (i32.const 213)))
      (call $log_warn (call $block (i32.const 64) (i32.const 213)))
      (call $log_info (call $block (i32.const 64) (i32.const 213)))
      (call $log_debug (call $block (i32.const 64) (i32.const 213)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 2000))))
    (call $output (i32.const 0) (i32.const 14))
    (i32.const 0)))
