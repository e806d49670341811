;; loop: export `loop` never returns. It imports nothing and touches no memory: only a
;; host's call timeout (go-sdk: Manifest.Timeout, which closes the module on the context's
;; deadline) or cancellation ends it.
(module
  (func (export "loop") (result i32)
    (loop $forever
      (br $forever))
    (i32.const 0)))
