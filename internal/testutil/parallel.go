package testutil

import (
	"sync"
	"sync/atomic"
)

// ForEachParallel calls fn(i) for every i in [0, n) on the given number of goroutines and
// returns the first error; after an error, the other goroutines stop taking new indexes.
func ForEachParallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first error
	var once sync.Once
	var failed atomic.Bool
	for range workers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
