;; class: guest errors / the program returns status 1 (error) with a message
;; applied as: program (on request)
;; expected: Get fails FailedPrecondition naming the feature and the guest's message
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\01\13hostile guest error") ;; 21 bytes
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.const 0x1000000015)))
