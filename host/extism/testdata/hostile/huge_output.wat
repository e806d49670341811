;; huge_output: export `huge` allocates a 64 MiB block in the kernel's memory
;; (extism:host/env alloc, (i64) -> i64), marks its first and last bytes with 'H' and sets it
;; as the call's output (output_set, (i64 addr, i64 length)). A host that copies outputs
;; without a cap reads 64 MiB. Returns 2 if the kernel cannot allocate the block (alloc
;; returned 0).
;;
;; export `huge_4g` does the same with 4 GiB - 1 byte, more than a 32-bit kernel memory can
;; hold: it shows what the kernel does with an alloc it cannot satisfy.
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))

  (func $emit (param $n i64) (result i32)
    (local $blk i64)
    (local.set $blk (call $alloc (local.get $n)))
    (if (i64.eqz (local.get $blk))
      (then (return (i32.const 2))))
    (call $store_u8 (local.get $blk) (i32.const 0x48))
    (call $store_u8 (i64.sub (i64.add (local.get $blk) (local.get $n)) (i64.const 1)) (i32.const 0x48))
    (call $output_set (local.get $blk) (local.get $n))
    (i32.const 0))

  (func (export "huge") (result i32)
    (call $emit (i64.const 67108864)))      ;; 64 MiB

  (func (export "huge_4g") (result i32)
    (call $emit (i64.const 4294967295))))   ;; 4 GiB - 1
