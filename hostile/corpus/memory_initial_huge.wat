;; class: memory limits / an initial memory of 65536 pages (4 GiB), beyond the host's ceiling
;; applied as: program; also as an Extism plugin's module (plugin_memory_initial_huge)
;; expected: refused at apply (InvalidArgument, naming the memory)
(module
  (memory (export "memory") 65536)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.const 0x100000000b)))
