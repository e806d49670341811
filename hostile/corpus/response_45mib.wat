;; class: bounded outputs / a program returning a 45 MiB response (ABI §6: 16 MiB at most)
;; applied as: program (on request), primitive string, memoryLimit 48Mi
;; expected: Get fails (Internal: the guest broke the protocol) naming the feature
(module
  (memory (export "memory") 736) ;; 46 MiB
  ;; at 64 KiB: status ok, a string of 47185913 NUL bytes (uvarint f9 ff bf 16), then the
  ;; flags byte (0, as memory is zero): 45 MiB in all
  (data (i32.const 0x10000) "\00\03\f9\ff\bf\16")
  (func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
  (func (export "osprey_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "osprey_program") (param i32 i32) (result i64)
    (i64.const 0x1000002d00000)))
