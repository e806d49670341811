package osprey

import "github.com/osprey-ml/osprey/abi"

// Keys identify an entity: (name, value) pairs with unique names, in the order of the
// feature's keys. A nil Keys means "none".
type Keys []abi.KV

// K builds Keys from alternating names and values: K("card_id", "c1", "merchant", "m7").
// It panics when given an odd number of strings.
func K(pairs ...string) Keys {
	if len(pairs)%2 != 0 {
		panic("osprey.K: odd number of arguments (want name, value, name, value, …)")
	}
	k := make(Keys, len(pairs)/2)
	for i := range k {
		k[i] = abi.KV{Name: pairs[2*i], Value: pairs[2*i+1]}
	}
	return k
}

// Get returns the value of the named key.
func (k Keys) Get(name string) (string, bool) {
	for _, kv := range k {
		if kv.Name == name {
			return kv.Value, true
		}
	}
	return "", false
}
