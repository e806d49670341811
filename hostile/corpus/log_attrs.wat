;; class: a guest cannot write a log line that reads as the host's / osprey.log with
;;        attributes named level, msg, component and time, a message holding a newline and a
;;        JSON log line, and the same JSON line written to stdout and stderr
;; applied as: program (on request)
;; expected: Get succeeds; no JSON log line of the server has a top-level level, msg,
;;           component or time that the guest chose, nor a repeated top-level key
(module
  (import "osprey" "log" (func $log (param i32 i32 i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  ;; the message, 65 bytes
  (data (i32.const 256) "spoof\n{\"level\":\"ERROR\",\"msg\":\"spoofed-line\",\"component\":\"server\"}")
  ;; the attributes, a Row of 4 strings, 87 bytes
  (data (i32.const 512) "\04\05level\03\0dspoofed-level\03msg\03\0bspoofed-msg\09component\03\11spoofed-component\04time\03\0cspoofed-time")
  ;; a JSON log line for stdout and stderr, 92 bytes
  (data (i32.const 1024) "{\"time\":\"2000-01-01T00:00:00Z\",\"level\":\"ERROR\",\"msg\":\"spoofed-stdout\",\"component\":\"server\"}\n")
  (data (i32.const 2048) "\00\04\00\00\5c\00\00\00") ;; iovec {1024, 92}
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (call $log (i32.const 8) (i32.const 256) (i32.const 65) (i32.const 512) (i32.const 87))
    (call $log (i32.const 0) (i32.const 256) (i32.const 5) (i32.const 512) (i32.const 87))
    (drop (call $fd_write (i32.const 1) (i32.const 2048) (i32.const 1) (i32.const 2100)))
    (drop (call $fd_write (i32.const 2) (i32.const 2048) (i32.const 1) (i32.const 2100)))
    (i64.const 0x100000000b)))
