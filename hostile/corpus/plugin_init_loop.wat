;; class: stop / an Extism plugin (a WASI reactor) whose _initialize never ends: the host
;;        runs it when an instance is made, before any call
;; applied as: plugin hostile.plugin_init_loop (its function `noop` a middleware), alone,
;;             spec.limits.timeout 300ms
;; expected: the apply is refused (DeadlineExceeded: the instantiation did not finish
;;           within the plugin's timeout) within the refusal bound
(module
  (func (export "_initialize")
    (loop $l
      (br $l)))
  (func (export "noop") (result i32)
    (i32.const 0)))
