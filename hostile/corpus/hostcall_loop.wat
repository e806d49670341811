;; class: host-call abuse / osprey.get_feature of a feature it may not read, forever
;; applied as: program (on request)
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound
(module
  (import "osprey" "get_feature" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (data (i32.const 256) "hostile.nothing") ;; 15 bytes
  (data (i32.const 300) "\00") ;; Keys: none
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (loop $forever
      (drop (call $get (i32.const 256) (i32.const 15) (i32.const 300) (i32.const 1)
                       (i32.const 1024) (i32.const 256)))
      (br $forever))
    (i64.const 0x100000000b)))
