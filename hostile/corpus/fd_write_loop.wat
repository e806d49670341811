;; class: work charging for host calls, bounded output / WASI fd_write of a line to stdout on
;;        every loop iteration, forever
;; applied as: program (on request), timeout 200ms
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound; the
;;           server's log stays bounded
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (data (i32.const 256) "hostile stdout loop\n") ;; 20 bytes
  (data (i32.const 512) "\00\01\00\00\14\00\00\00") ;; iovec {256, 20}
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (loop $forever
      (drop (call $fd_write (i32.const 1) (i32.const 512) (i32.const 1) (i32.const 600)))
      (br $forever))
    (i64.const 0x100000000b)))
