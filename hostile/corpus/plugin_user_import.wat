;; class: misc / an Extism plugin importing a user host function (extism:host/user) that
;;        this host does not provide
;; applied as: plugin hostile.plugin_user_import (its function `noop` a middleware), alone
;; expected: the apply is refused (InvalidArgument or FailedPrecondition) naming the import
(module
  (import "extism:host/user" "steal" (func $steal (param i64) (result i64)))
  (func (export "noop") (result i32)
    (drop (call $steal (i64.const 0)))
    (i32.const 0)))
