;; class: tables count as memory / table.grow by 2^26 entries (512 MiB of references) on every
;;        call
;; applied as: program (on request), called three times
;; expected: the grow fails inside the guest (table.grow returns -1, which the program returns
;;           as its value) and host memory does not grow; a trap (Internal) is also accepted
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    ;; the value: what table.grow returned (-1 when refused, else the old size)
    (i64.store offset=18 (i32.const 0)
      (i64.extend_i32_s (table.grow $t (ref.null func) (i32.const 0x4000000))))
    (i64.const 0x100000000b)))
