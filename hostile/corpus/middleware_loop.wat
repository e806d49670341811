;; class: stop checks / a middleware that never returns
;; applied as: preSet middleware of a sourceless feature
;; expected: Set fails DeadlineExceeded naming the feature, within the call bound
(module
  (memory (export "memory") 1)
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_middleware") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0)))
