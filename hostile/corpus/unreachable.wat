;; class: traps / `unreachable`
;; applied as: program (on request)
;; expected: Get fails Internal (a trap) naming the feature and "unreachable"
(module
  (memory (export "memory") 1)
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (unreachable)))
