//go:build linux && !race

// sync/atomic on a mapping whose file shrinks can crash a -race binary: the
// race runtime's atomic runs on the system stack, where a fault cannot become
// a panic. These tests therefore only run without -race.

package sigbus_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf/sigbus"
)

func TestGuardAtomics(t *testing.T) {
	_, m := truncatedMapping(t)
	word := (*uint64)(unsafe.Pointer(&m[page+8]))

	fe := requireFault(t, m, sigbus.Guard(m, func() { sinkUint64 = atomic.LoadUint64(word) }))
	require.Equal(t, int64(page+8), fe.Offset)
	fe = requireFault(t, m, sigbus.Guard(m, func() { atomic.AddUint64(word, 1) }))
	require.Equal(t, int64(page+8), fe.Offset)
	fe = requireFault(t, m, sigbus.Guard(m, func() { atomic.CompareAndSwapUint64(word, 0, 1) }))
	require.Equal(t, int64(page+8), fe.Offset)

	head := (*atomic.Uint64)(unsafe.Pointer(&m[8]))
	require.NoError(t, sigbus.Guard(m, func() { head.Add(1) }))
}

// TestGuardAtomicsConcurrentTruncation runs atomics on the tail while another
// goroutine cuts the file and grows it back.
func TestGuardAtomicsConcurrentTruncation(t *testing.T) {
	f, m := truncatedMapping(t)
	require.NoError(t, f.Truncate(mapSize))
	word := (*atomic.Uint64)(unsafe.Pointer(&m[2*page]))

	stop := make(chan struct{})
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				errs <- nil
				return
			default:
			}
			err := sigbus.Guard(m, func() { word.Add(1) })
			if fe, ok := err.(*sigbus.FaultError); err != nil && (!ok || fe.Offset != int64(2*page)) {
				errs <- errorf("atomic add: %v", err)
				return
			}
		}
	})
	for i := range 200 {
		size := int64(mapSize)
		if i%2 == 0 {
			size = int64(page)
		}
		require.NoError(t, f.Truncate(size))
	}
	close(stop)
	wg.Wait()
	require.NoError(t, <-errs)
}
