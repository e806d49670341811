;; class: host-call abuse / osprey.log with a 2 GiB message length
;; applied as: program (on request)
;; expected: Get fails Internal (a protocol error: the host fails the call) naming the feature
(module
  (import "osprey" "log" (func $log (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (call $log (i32.const 0) (i32.const 0) (i32.const 0x7fffffff) (i32.const 0) (i32.const 0))
    (i64.const 0x100000000b)))
