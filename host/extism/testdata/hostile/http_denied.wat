;; http_denied: export `fetch` asks the host for GET http://example.invalid/ through the
;; kernel ABI's HTTP function:
;;
;;   http_request (i64 request, i64 body) -> i64   request: a kernel block holding JSON
;;                 {"url":...,"method":...,"headers":{...}}; body: a block or 0 for none;
;;                 returns the response body's block, 0 when empty
;;   length       (i64 addr) -> i64                a block's length
;;
;; A host that does not list example.invalid in allowed_hosts refuses it (go-sdk v1.7.1:
;; the host function panics, so the call fails with "HTTP request to
;; 'http://example.invalid/' is not allowed"). .invalid never resolves (RFC 2606), so even a
;; host that allowed it would send nothing anywhere. If the request did return, the body
;; becomes the output and the export returns 0.
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "http_request" (func $http_request (param i64 i64) (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))

  (memory 1)
  (data (i32.const 0) "{\"url\":\"http://example.invalid/\",\"method\":\"GET\"}")
  (global $req_len i32 (i32.const 48))

  (func (export "fetch") (result i32)
    (local $blk i64)
    (local $i i32)
    (local $res i64)
    ;; Copy the request JSON from this module's memory into a kernel block.
    (local.set $blk (call $alloc (i64.extend_i32_u (global.get $req_len))))
    (block $done
      (loop $copy
        (br_if $done (i32.ge_u (local.get $i) (global.get $req_len)))
        (call $store_u8
          (i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))
          (i32.load8_u (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (local.set $res (call $http_request (local.get $blk) (i64.const 0)))
    (if (i64.ne (local.get $res) (i64.const 0))
      (then (call $output_set (local.get $res) (call $length (local.get $res)))))
    (i32.const 0)))
