;; class: misc / an Extism plugin ending its call with WASI proc_exit(3), which closes its
;;        module instance
;; applied as: plugin hostile.plugin_proc_exit: its function `quit` the connector of an
;;             on-request feature, called twice
;; expected: each Get fails FailedPrecondition (the plugin's error: "exited with code 3")
;;           naming the feature; the second call runs on a new instance (the closed one is
;;           not reused) and fails the same way
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "quit") (result i32)
    (call $proc_exit (i32.const 3))
    (i32.const 0)))
