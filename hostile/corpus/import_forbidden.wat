;; class: imports / a function imported from a module other than osprey and WASI (env.f)
;; applied as: program
;; expected: refused at apply (InvalidArgument, naming env.f)
(module
  (import "env" "f" (func $f))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (call $f)
    (i64.const 0x100000000b)))
