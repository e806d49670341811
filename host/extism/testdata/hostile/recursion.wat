;; recursion: export `recurse` calls a function that calls itself with no base case (and
;; not in tail position), until the host's call stack runs out: wazero traps with
;; "stack overflow".
(module
  (func $down (param $depth i64) (result i64)
    (i64.add
      (call $down (i64.add (local.get $depth) (i64.const 1)))
      (i64.const 1)))

  (func (export "recurse") (result i32)
    (i32.wrap_i64 (call $down (i64.const 0)))))
