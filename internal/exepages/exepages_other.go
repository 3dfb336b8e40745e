//go:build !linux

package exepages

import "errors"

// Release is a no-op outside Linux.
func Release() (Released, error) { return Released{}, errors.New("exepages: only on linux") }
