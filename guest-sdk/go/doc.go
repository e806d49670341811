// Package osprey is placeholder.
package osprey
