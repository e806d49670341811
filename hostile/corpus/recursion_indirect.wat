;; class: stop checks at function entry / exponential recursion through call_indirect, d = 60
;; applied as: program (on request)
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound
(module
  (type $sig (func (param i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (elem (i32.const 0) $f)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func $f (type $sig) (param $d i32)
    (if (i32.eqz (local.get $d)) (then (return)))
    (call_indirect (type $sig) (i32.sub (local.get $d) (i32.const 1)) (i32.const 0))
    (call_indirect (type $sig) (i32.sub (local.get $d) (i32.const 1)) (i32.const 0)))
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (call_indirect (type $sig) (i32.const 60) (i32.const 0))
    (i64.const 0x100000000b)))
