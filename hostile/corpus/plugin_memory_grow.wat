;; class: memory / an Extism plugin growing its own linear memory one page at a time past
;;        its spec.limits.memoryPages (64: 4 MiB)
;; applied as: plugin hostile.plugin_memory_grow, spec.limits.memoryPages 64: its function
;;             `grow` the connector of an on-request feature (entry plugin_memory_grow),
;;             its function `grow_forever` the same (entry plugin_memory_grow_loop)
;; expected: `grow` grows until memory.grow fails (-1, not a trap) and returns
;;           {"value": pages}: Get succeeds with at most 64 pages, on every call, and the
;;           host's memory does not grow over the calls; `grow_forever` keeps calling
;;           memory.grow and fails DeadlineExceeded within the call bound
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"value\":")

  ;; $block copies the n bytes at p of this module's memory into a new kernel block (8
  ;; bytes a host call, then the rest byte by byte) and returns it.
  (func $block (param $p i32) (param $n i32) (result i64)
    (local $blk i64)
    (local $i i32)
    (local.set $blk (call $alloc (i64.extend_i32_u (local.get $n))))
    (block $words
      (loop $word
        (br_if $words (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $n)))
        (call $store_u64 (i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))
          (i64.load (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $word)))
    (block $bytes
      (loop $byte
        (br_if $bytes (i32.ge_u (local.get $i) (local.get $n)))
        (call $store_u8 (i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))
          (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $byte)))
    (local.get $blk))

  ;; $output sets the n bytes at p as the call's output.
  (func $output (param $p i32) (param $n i32)
    (call $output_set (call $block (local.get $p) (local.get $n)) (i64.extend_i32_u (local.get $n))))

  ;; $output_int sets {"value":v} as the call's output (the prefix is the data at 0).
  (func $output_int (param $v i32)
    (local $t i32)
    (local $n i32)
    (local $len i32)
    (local.set $t (local.get $v))
    (local.set $n (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $count)))
    (local.set $len (local.get $n))
    (local.set $t (local.get $v))
    (loop $digit
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (i32.store8 (i32.add (i32.const 9) (local.get $n))
        (i32.add (i32.const 48) (i32.rem_u (local.get $t) (i32.const 10))))
      (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
      (br_if $digit (i32.gt_u (local.get $n) (i32.const 0))))
    (i32.store8 (i32.add (i32.const 9) (local.get $len)) (i32.const 125)) ;; }
    (call $output (i32.const 0) (i32.add (i32.const 10) (local.get $len))))

  (func (export "grow") (result i32)
    (local $old i32)   ;; memory.grow's result: the size before, or -1
    (local $pages i32) ;; pages held now
    (local.set $pages (memory.size))
    (block $failed
      (loop $more
        (local.set $old (memory.grow (i32.const 1)))
        (br_if $failed (i32.eq (local.get $old) (i32.const -1)))
        (local.set $pages (i32.add (local.get $old) (i32.const 1)))
        (br $more)))
    (call $output_int (local.get $pages))
    (i32.const 0))

  (func (export "grow_forever") (result i32)
    (loop $forever
      (drop (memory.grow (i32.const 1)))
      (br $forever))
    (i32.const 0)))
