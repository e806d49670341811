;; class: ABI checks / no osprey_program export
;; applied as: program
;; expected: refused at apply (InvalidArgument, naming osprey_program)
(module
  (memory (export "memory") 1)
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192)))
