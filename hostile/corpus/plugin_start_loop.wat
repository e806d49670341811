;; class: stop / an Extism plugin whose start function never ends: it runs when an instance
;;        is made, before any call
;; applied as: plugin hostile.plugin_start_loop (its function `noop` a middleware), alone,
;;             spec.limits.timeout 1s, beside a trivial apply
;; expected: the apply is refused (DeadlineExceeded: the instantiation did not finish
;;           within the plugin's timeout) within the refusal bound; the trivial apply
;;           beside it succeeds promptly
(module
  (func $forever
    (loop $l
      (br $l)))
  (start $forever)
  (func (export "noop") (result i32)
    (i32.const 0)))
