;; class: bounded logs / 100 000 calls of osprey.log in one program call
;; applied as: program fed by a data source, timeout 10s
;; expected: Ingest of a row succeeds; the server's log output stays bounded
(module
  (import "osprey" "log" (func $log (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (data (i32.const 256) "hostile log flood") ;; 17 bytes
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (local $i i32)
    (loop $again
      (call $log (i32.const 0) (i32.const 256) (i32.const 17) (i32.const 0) (i32.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 100000))))
    (i64.const 0x100000000b)))
