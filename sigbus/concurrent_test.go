//go:build linux

package sigbus_test

import (
	"runtime/debug"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf/sigbus"
)

// TestGuardConcurrentFaults has several goroutines, each with its own
// guards, fault over and over on a shared mapping and a private one, with
// good reads in between: every goroutine gets its own faults, at its own
// offsets, and its own setting back.
func TestGuardConcurrentFaults(t *testing.T) {
	const (
		workers = 8
		rounds  = 300
	)
	_, shared := truncatedMapping(t)
	own := make([][]byte, workers)
	for w := range own {
		_, own[w] = truncatedMapping(t)
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			errs <- worker(w, rounds, shared, own[w])
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// worker runs rounds of good and faulting accesses and returns the first
// surprise.
func worker(w, rounds int, shared, own []byte) error {
	if debug.SetPanicOnFault(false) {
		return errorf("worker %d: new goroutine started with SetPanicOnFault on", w)
	}
	for i := range rounds {
		m := shared
		if i%2 == 1 {
			m = own
		}
		off := page + (w*rounds+i)%(len(m)-page)

		err := sigbus.Guard(m, func() { sinkByte = m[off] })
		fe, ok := err.(*sigbus.FaultError)
		if !ok || fe.Offset != int64(off) {
			return errorf("worker %d round %d: reading offset %d gave %v", w, i, off, err)
		}

		good := (w + i) % page
		var got byte
		if err := sigbus.Guard(m, func() { got = m[good] }); err != nil || got != pattern(good) {
			return errorf("worker %d round %d: reading offset %d gave %d, %v", w, i, good, got, err)
		}
	}
	if debug.SetPanicOnFault(false) {
		return errorf("worker %d: SetPanicOnFault left on", w)
	}
	return nil
}

// TestGuardConcurrentTruncation has readers copy the whole mapping while
// another goroutine cuts the file and grows it back, over and over: each copy
// either succeeds or reports a fault inside the mapping, and nothing crashes.
func TestGuardConcurrentTruncation(t *testing.T) {
	const (
		readers = 4
		toggles = 200
	)
	f, m := truncatedMapping(t)
	require.NoError(t, f.Truncate(mapSize))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	results := make([][2]int, readers) // clean copies, faults
	errs := make(chan error, readers)
	for r := range readers {
		wg.Go(func() {
			dst := make([]byte, len(m))
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				err := sigbus.Guard(m, func() { copy(dst, m) })
				if err == nil {
					results[r][0]++
					continue
				}
				fe, ok := err.(*sigbus.FaultError)
				if !ok || fe.Offset < int64(page) || fe.Offset >= int64(len(m)) {
					errs <- errorf("reader %d: %v", r, err)
					return
				}
				results[r][1]++
			}
		})
	}
	for i := range toggles {
		size := int64(mapSize)
		if i%2 == 0 {
			size = int64(page)
		}
		require.NoError(t, f.Truncate(size))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("clean copies, faults per reader: %v", results)

	// toggles is even, so the file ends up whole: cut it for the last word.
	require.NoError(t, f.Truncate(int64(page)))
	requireFault(t, m, sigbus.Guard(m, func() { copy(make([]byte, len(m)), m) }))
}
