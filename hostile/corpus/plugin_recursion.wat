;; class: misc / unbounded recursion in an Extism plugin: a function calling itself with no
;;        base case, not in tail position, until the call stack runs out
;; applied as: plugin hostile.plugin_recursion, its function `recurse` the connector of an
;;             on-request feature
;; expected: Get fails Internal (the plugin trapped: extism.ErrTrap, "stack overflow")
;;           naming the feature, within the call bound; the server is unharmed
(module
  (func $down (param $depth i64) (result i64)
    (i64.add
      (call $down (i64.add (local.get $depth) (i64.const 1)))
      (i64.const 1)))
  (func (export "recurse") (result i32)
    (i32.wrap_i64 (call $down (i64.const 0)))))
