;; class: stop checks / an infinite `loop` in the program
;; applied as: program (on request)
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0x100000000b)))
