;; class: bounded logs / 100 000 lines written to stdout (WASI fd_write) in one program call
;; applied as: program (on request), timeout 10s
;; expected: Get succeeds; the server's log output stays bounded
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (data (i32.const 256) "hostile stdout flood\n") ;; 21 bytes
  (data (i32.const 512) "\00\01\00\00\15\00\00\00") ;; iovec {256, 21}
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (local $i i32)
    (loop $again
      (drop (call $fd_write (i32.const 1) (i32.const 512) (i32.const 1) (i32.const 600)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 100000))))
    (i64.const 0x100000000b)))
