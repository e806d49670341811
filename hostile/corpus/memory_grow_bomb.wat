;; class: memory limits / memory.grow one page at a time until refused, then by 65535 pages
;;        and by one more page past the limit
;; applied as: program (on request) with spec.builder.config.memoryLimit 16Mi
;; expected: Get succeeds; the value (pages reached) is at most the limit (256 pages)
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (block $refused
      (loop $grow
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $grow)))
    (drop (memory.grow (i32.const 65535)))
    (drop (memory.grow (i32.const 1)))
    (i64.store offset=18 (i32.const 0) (i64.extend_i32_u (memory.size)))
    (i64.const 0x100000000b)))
