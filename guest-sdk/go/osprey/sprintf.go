package osprey

import "fmt"

// sprintf is fmt.Sprintf when there are arguments. It lives apart so that a guest that never
// calls Reject links no fmt (the linker drops unreachable functions).
func sprintf(format string, args []any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}
