;; class: none (the healthy baseline)
;; applied as: program (healthy.wasm, the trivial applies run beside structural refusals,
;;             and TestChurn's modules derive from it)
;; expected: Get answers int 42
(module
  (memory (export "memory") 1)
  ;; the response at 16: status ok, int 42, no flags
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.const 0x100000000b)))
