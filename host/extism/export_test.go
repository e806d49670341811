package extism

// Released returns a channel closed once p's runtime is closed (Close's drain is over).
func Released(p *Plugin) <-chan struct{} { return p.released }

// Idle returns how many idle instances p holds.
func Idle(p *Plugin) int { return len(p.idle) }

// MaxVarBytes bounds an instance's variables (var_set).
const MaxVarBytes = maxVarBytes
