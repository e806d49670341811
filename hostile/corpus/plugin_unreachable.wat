;; class: misc / an Extism plugin that traps (unreachable)
;; applied as: plugin hostile.plugin_unreachable, its function `trap` the encoder of a
;;             selector (feature[hostile.plugin_unreachable]); the same as
;;             plugin_input_huge, whose value to encode (3 MiB) does not fit its kernel's
;;             memory (memoryPages 32)
;; expected: the Get through the encoding fails Internal ("unreachable") naming the feature;
;;           plugin_input_huge's fails ResourceExhausted before the plugin runs
(module
  (func (export "trap") (result i32)
    (unreachable)))
