;; memory: grows its own linear memory (not the kernel's) one 64 KiB page at a time.
;;
;; export `grow`            grows until memory.grow fails (-1: the host's page limit, e.g.
;;                          go-sdk Manifest.Memory.MaxPages, or the 4 GiB maximum), then keeps
;;                          trying in a loop for ever: ends only by the host's timeout.
;; export `grow_until_fail` grows until memory.grow fails and returns the number of pages
;;                          it then has (a non-zero rc: the host sees how far it got).
;;                          With no host limit that is 65536 (4 GiB), one page at a time:
;;                          about 100 s here, so give it a limit.
;;
;; memory.grow failing is not a trap in WebAssembly; it returns -1 and the guest goes on.
(module
  (memory (export "memory") 1)

  (func (export "grow") (result i32)
    (loop $forever
      (drop (memory.grow (i32.const 1)))
      (br $forever))
    (i32.const 0))

  (func (export "grow_until_fail") (result i32)
    (local $old i32)    ;; memory.grow's result: the size before, or -1
    (local $pages i32)  ;; pages held now
    (local.set $pages (memory.size))
    (block $failed
      (loop $more
        (local.set $old (memory.grow (i32.const 1)))
        (br_if $failed (i32.eq (local.get $old) (i32.const -1)))
        (local.set $pages (i32.add (local.get $old) (i32.const 1)))
        (br $more)))
    ;; Counted rather than read back with memory.size: at the full 4 GiB (65536 pages)
    ;; wazero's memory.size reads 0, which would look like success.
    (local.get $pages)))
