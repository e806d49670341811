;; class: host-call abuse / osprey.get_feature with a selector pointer outside memory
;; applied as: program (on request)
;; expected: Get fails Internal (a protocol error: the host fails the call) naming the feature
(module
  (import "osprey" "get_feature" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (drop (call $get (i32.const 0xffffff00) (i32.const 64) (i32.const 300) (i32.const 1)
                     (i32.const 1024) (i32.const 256)))
    (i64.const 0x100000000b)))
