;; class: stop checks / an Extism plugin function that never returns: no imports, no
;;        memory, no host calls; only the host's stop ends it
;; applied as: plugin hostile.<entry>, its function `loop` a preSet middleware
;;             (plugin_loop_preset), a preGet one (plugin_loop_preget), the encoder of a
;;             selector (plugin_loop_encoder), the connector of an on-request feature
;;             (plugin_loop_connector; plugin_loop_flood: 32 calls at once, more than the
;;             policy's 16 instances); declared with a 1m timeout (plugin_limits_policy) or
;;             under a name it does not export (plugin_missing_function); TestPluginChurn
;;             deletes it while 8 calls of it run
;; expected: every call fails DeadlineExceeded naming the feature, within the call bound,
;;           at the plugin's timeout or the feature's, whichever is shorter (calls waiting
;;           for an instance too); the next calls are bounded the same way; the server
;;           serves meanwhile; the applies named are refused (FailedPrecondition)
(module
  (func (export "loop") (result i32)
    (loop $forever
      (br $forever))
    (i32.const 0)))
