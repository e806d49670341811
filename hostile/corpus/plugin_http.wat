;; class: http / an Extism plugin making the HTTP request its Extism config holds (config
;;        "request": the http_request JSON, {"url": …}) and returning {"value":1} if it
;;        returns
;; applied as: plugin hostile.<entry>, its function `fetch` the connector of an on-request
;;             feature; the server's policy allows plugins the host 127.0.0.1, where the
;;             test serves /slow, /drip, /huge, /headers, /redirect and /leak (apiServer):
;;   plugin_http_undeclared  declares no host, asks for http://127.0.0.1:<port>/leak
;;   plugin_http_other_host  declares 127.0.0.1, asks for http://localhost:<port>/leak
;;   plugin_http_redirect    declares 127.0.0.1, asks for /redirect, which redirects to
;;                           http://localhost:<port>/leak
;;   plugin_http_huge        declares 127.0.0.1, asks for /huge, a 64 MiB body without a
;;                           Content-Length, with spec.limits.httpResponseBytes 65536
;;   plugin_http_headers     declares 127.0.0.1, asks for /headers, 2 MiB of headers
;;   plugin_http_drip        declares 127.0.0.1, asks for /drip, a byte every 50 ms for ever
;;   plugin_http_slow        declares 127.0.0.1, asks for /slow, which never answers
;;   plugin_http_policy      declares api.example.com, which the policy does not allow
;; expected: undeclared, other host, redirect: Get fails FailedPrecondition (extism.ErrDenied,
;;           "not allowed") naming the feature, and no request reaches /leak; huge:
;;           ResourceExhausted (the body over its cap, not read whole); headers: Internal
;;           or ResourceExhausted (the transport's header cap); drip, slow: DeadlineExceeded
;;           at the plugin's timeout, within the call bound; policy: the apply is refused
;;           FailedPrecondition naming spec.allowedHosts[0]
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "http_request" (func $http_request (param i64 i64) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"value\":1}") ;; 11 bytes
  (data (i32.const 16) "request")      ;; 7 bytes

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

  (func (export "fetch") (result i32)
    (local $req i64)
    (local.set $req (call $config_get (call $block (i32.const 16) (i32.const 7))))
    (if (i64.eqz (local.get $req))
      (then (unreachable))) ;; no config "request": a test bug
    (drop (call $http_request (local.get $req) (i64.const 0)))
    (call $output (i32.const 0) (i32.const 11))
    (i32.const 0)))
