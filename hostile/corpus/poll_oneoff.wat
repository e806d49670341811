;; class: work charging for host calls / WASI poll_oneoff with 100 000 clock subscriptions
;;        (48 bytes each, all zero: realtime, timeout 0) on every loop iteration
;; applied as: program (on request), timeout 200ms
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 200) ;; 12.5 MiB: 4.8 MB of subscriptions, 3.2 MB of events
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (loop $forever
      ;; in = 64 KiB, out = 64 KiB + 4.8 MB, nsubscriptions = 100000, nevents at 1024
      (drop (call $poll (i32.const 0x10000) (i32.const 0x4a3e00) (i32.const 100000) (i32.const 1024)))
      (br $forever))
    (i64.const 0x100000000b)))
