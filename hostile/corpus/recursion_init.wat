;; class: stop checks at function entry / exponential recursion (d = 60) inside _initialize
;; applied as: program
;; expected: refused at apply (InvalidArgument, naming _initialize), within the host's init
;;           timeout plus slack
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\01\2a\00\00\00\00\00\00\00\00")
  (func $f (param $d i32)
    (if (i32.eqz (local.get $d)) (then (return)))
    (call $f (i32.sub (local.get $d) (i32.const 1)))
    (call $f (i32.sub (local.get $d) (i32.const 1))))
  (func (export "_initialize")
    (call $f (i32.const 60)))
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.const 0x100000000b)))
