;; class: imports / a global imported from an unknown module (env.g)
;; applied as: program
;; expected: refused at apply (InvalidArgument, naming env.g)
(module
  (import "env" "g" (global $g i32))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.store offset=18 (i32.const 0) (i64.extend_i32_s (global.get $g)))
    (i64.const 0x100000000b)))
