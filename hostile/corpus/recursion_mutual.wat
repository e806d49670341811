;; class: stop checks at function entry / exponential mutual recursion: f calls g twice, g
;;        calls f twice, d = 60
;; applied as: program (on request)
;; expected: Get fails DeadlineExceeded naming the feature, within the call bound
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func $f (param $d i32)
    (if (i32.eqz (local.get $d)) (then (return)))
    (call $g (i32.sub (local.get $d) (i32.const 1)))
    (call $g (i32.sub (local.get $d) (i32.const 1))))
  (func $g (param $d i32)
    (if (i32.eqz (local.get $d)) (then (return)))
    (call $f (i32.sub (local.get $d) (i32.const 1)))
    (call $f (i32.sub (local.get $d) (i32.const 1))))
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (call $f (i32.const 60))
    (i64.const 0x100000000b)))
