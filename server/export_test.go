package server

// Watchers returns how many Watch streams watch fqn.
func (s *Server) Watchers(fqn string) int {
	if s.watch == nil {
		return 0
	}
	return s.watch.watchers(fqn)
}

var (
	ValueToProto   = valueToProto
	ValueFromProto = valueFromProto
	RowFromProto   = rowFromProto
)
