;; class: ABI checks / no osprey_alloc export
;; applied as: program
;; expected: refused at apply (InvalidArgument, naming osprey_alloc)
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.const 0x100000000b)))
