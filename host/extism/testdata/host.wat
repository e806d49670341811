;; host: an Extism plugin, no PDK, for the host functions of the kernel ABI that echo.wat and
;; fail.wat do not use. Imports from "extism:host/env" (go-sdk v1.7.1 host.go), offsets in
;; the kernel's memory:
;;
;;   input_offset     () -> i64                the input's block (its length is the input's)
;;   http_request     (i64 req, i64 body) -> i64
;;                                             req: a block of JSON {"url","method","headers"};
;;                                             body: a block or 0; returns the response
;;                                             body's block (0 when empty). The host frees
;;                                             req and body.
;;   var_set          (i64 name, i64 value)    value 0 deletes; the host frees both blocks
;;   var_get          (i64 name) -> i64        the value's block, 0 when unset; the host
;;                                             frees the name's
;;   log_info         (i64 msg)                the host frees the block
;;   get_log_level    () -> i32                0 trace, 1 debug, 2 info, 3 warn, 4 error,
;;                                             2147483647 off
;;
;; Exports (each returns 0):
;;   fetch    the input is http_request's request; the output is the response body
;;   var_set  the variable "v" gets the input's bytes
;;   var_get  the output is the variable "v" (empty when unset)
;;   log      logs the input at info level, if the host logs info lines
(module
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "http_request" (func $http_request (param i64 i64) (result i64)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (import "extism:host/env" "get_log_level" (func $get_log_level (result i32)))

  ;; The block at $blk, if any, is the call's output.
  (func $output (param $blk i64)
    (if (i64.ne (local.get $blk) (i64.const 0))
      (then (call $output_set (local.get $blk) (call $length (local.get $blk))))))

  ;; A new block holding the variable name "v".
  (func $name (result i64)
    (local $blk i64)
    (local.set $blk (call $alloc (i64.const 1)))
    (call $store_u8 (local.get $blk) (i32.const 0x76))
    (local.get $blk))

  (func (export "fetch") (result i32)
    (call $output (call $http_request (call $input_offset) (i64.const 0)))
    (i32.const 0))

  (func (export "var_set") (result i32)
    (call $var_set (call $name) (call $input_offset))
    (i32.const 0))

  (func (export "var_get") (result i32)
    (call $output (call $var_get (call $name)))
    (i32.const 0))

  (func (export "log") (result i32)
    (if (i32.le_u (call $get_log_level) (i32.const 2))
      (then (call $log_info (call $input_offset))))
    (i32.const 0)))
