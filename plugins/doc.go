// Package plugins is Osprey's registry of named built-ins: state providers, notifiers and
// native middlewares (later also historian writers, builders and aggregations).
//
// Providers register themselves from an init function, Caddy-style, and the binary selects
// them by name from its configuration:
//
//	func init() { plugins.RegisterState("memory", newFromConfig) }
//
// A program makes a provider available by importing its package, usually blank:
//
//	import _ "github.com/osprey-ml/osprey/plugins/state/memory"
//
// Registration panics on an empty or duplicate name, so that two providers claiming one name
// fail at start-up rather than one silently shadowing the other. Lookups of unknown names
// return an error wrapping ErrNotRegistered that lists the registered names.
//
// All functions of the package are safe for concurrent use.
package plugins
