;; class: tables count as memory / a table declaring 2^27 entries (1 GiB of references per
;;        instance)
;; applied as: program; also as an Extism plugin's module (plugin_table_huge)
;; expected: refused at apply (InvalidArgument, naming the table)
(module
  (memory (export "memory") 1)
  (table 134217728 funcref)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.const 0x100000000b)))
