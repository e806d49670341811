;; class: traps / unbounded recursion ending in stack exhaustion
;; applied as: program (on request)
;; expected: Get fails Internal (a trap) naming the feature and the stack overflow
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func $deeper (param $n i64) (result i64)
    (i64.add (call $deeper (i64.add (local.get $n) (i64.const 1))) (i64.const 1)))
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (drop (call $deeper (i64.const 0)))
    (i64.const 0x100000000b)))
