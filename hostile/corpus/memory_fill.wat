;; class: work charging / memory.fill of 32 MiB on every loop iteration
;; applied as: program (on request), timeout 200ms
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound
(module
  (memory (export "memory") 512) ;; 32 MiB, the default memory limit
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (loop $forever
      (memory.fill (i32.const 0) (i32.const 0x5a) (i32.const 0x2000000))
      (br $forever))
    (i64.const 0x100000000b)))
