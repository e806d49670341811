;; echo: an Extism plugin written straight against the Extism kernel ABI, with no PDK.
;; Export `echo` copies the call's input to its output and returns 0 (success).
;;
;; The contract (github.com/extism/go-sdk v1.7.1 host.go, instantiateEnvModule; the kernel
;; is its embedded extism-runtime.wasm): every import comes from module "extism:host/env".
;; Offsets are i64 addresses in the *kernel's* memory, not this module's; the plugin moves
;; bytes in and out with the load/store functions. The input is addressed from 0 by
;; input_load_u8/input_load_u64 (relative to the input's start).
;;
;;   input_length   () -> i64              bytes of input
;;   input_load_u64 (i64 off) -> i64       8 input bytes at off, little-endian
;;   input_load_u8  (i64 off) -> i32       1 input byte at off
;;   alloc          (i64 n) -> i64         a kernel block of n bytes (0 if it cannot)
;;   store_u64      (i64 addr, i64 v)      8 bytes into kernel memory, little-endian
;;   store_u8       (i64 addr, i32 v)      1 byte into kernel memory
;;   output_set     (i64 addr, i64 n)      the call's output is that block
;;
;; An export takes no parameters and returns i32: 0 is success, anything else a failure
;; (the host's rc; with error_set, the message is the call's error; see fail.wat).
(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))

  (func (export "echo") (result i32)
    (local $len i64)   ;; input length
    (local $out i64)   ;; kernel address of the output block
    (local $i i64)     ;; bytes copied so far

    (local.set $len (call $input_length))
    (local.set $out (call $alloc (local.get $len)))

    ;; Whole 8-byte words first: while i + 8 <= len.
    (block $words_done
      (loop $words
        (br_if $words_done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $len)))
        (call $store_u64
          (i64.add (local.get $out) (local.get $i))
          (call $input_load_u64 (local.get $i)))
        (local.set $i (i64.add (local.get $i) (i64.const 8)))
        (br $words)))

    ;; Then the last 0..7 bytes one at a time.
    (block $bytes_done
      (loop $bytes
        (br_if $bytes_done (i64.ge_u (local.get $i) (local.get $len)))
        (call $store_u8
          (i64.add (local.get $out) (local.get $i))
          (call $input_load_u8 (local.get $i)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $bytes)))

    (call $output_set (local.get $out) (local.get $len))
    (i32.const 0)))
