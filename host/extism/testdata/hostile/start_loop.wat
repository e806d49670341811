;; start_loop: a start function that never returns. It runs while the plugin is
;; instantiated, before any call: the host must bound instantiation too.
(module
  (func $forever (loop $l (br $l)))
  (start $forever)
  (func (export "noop") (result i32) (i32.const 0)))
