;; fail: an Extism plugin, no PDK, whose export `fail` always fails the call: it copies a
;; message into a kernel block, hands it to error_set and returns 1.
;;
;; Imports, all from "extism:host/env" (go-sdk v1.7.1 host.go):
;;   alloc     (i64 n) -> i64         a kernel block of n bytes
;;   store_u8  (i64 addr, i32 v)      1 byte into kernel memory
;;   error_set (i64 addr)             the call's error is the text in that block (its
;;                                    length is the block's; error_set(0) clears it)
;;
;; The host reports a non-zero return as the call's rc and the block's text as its error
;; (go-sdk: Plugin.Call returns (1, nil output, error "fail.wat: this plugin always fails")).
;; The message is in this module's own memory (a data segment) and is copied over byte by
;; byte, since the kernel's memory is a different one.
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))

  (memory 1)
  ;; 34 bytes at address 0.
  (data (i32.const 0) "fail.wat: this plugin always fails")
  (global $msg_len i32 (i32.const 34))

  (func (export "fail") (result i32)
    (local $blk i64)
    (local $i i32)
    (local.set $blk (call $alloc (i64.extend_i32_u (global.get $msg_len))))
    (block $done
      (loop $copy
        (br_if $done (i32.ge_u (local.get $i) (global.get $msg_len)))
        (call $store_u8
          (i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))
          (i32.load8_u (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (call $error_set (local.get $blk))
    (i32.const 1)))
