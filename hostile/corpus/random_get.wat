;; class: work charging for host calls / WASI random_get of 1 MiB on every loop iteration
;; applied as: program fed by a data source, timeout 200ms
;; expected: Ingest of a row fails DeadlineExceeded naming the feature, within the call bound
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 32) ;; 2 MiB
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (loop $forever
      (drop (call $random_get (i32.const 0x10000) (i32.const 0x100000)))
      (br $forever))
    (i64.const 0x100000000b)))
