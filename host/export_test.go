package host

// WithoutTermination exposes withoutTermination to the benchmarks.
var WithoutTermination = withoutTermination
