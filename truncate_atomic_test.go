//go:build linux && !race

// sync/atomic on a mapping whose file shrinks can crash a -race binary: the
// race runtime runs atomics on the system stack, where a fault cannot become
// a panic (notes/setpanic.md). These access kinds only run without -race.

package sealbuf_test

import (
	"sync/atomic"
	"unsafe"
)

func init() {
	word := func(b []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&b[off])) }
	accessKinds = append(accessKinds,
		accessKind{"atomic.LoadUint64", false, func(b, _ []byte) { sinkUint64 = atomic.LoadUint64(word(b, page+8)) }},
		accessKind{"atomic.AddUint64", true, func(b, _ []byte) { atomic.AddUint64(word(b, page+16), 1) }},
		accessKind{"atomic.CompareAndSwapUint64", true, func(b, _ []byte) { atomic.CompareAndSwapUint64(word(b, page+24), 0, 1) }},
		accessKind{"atomic.Uint32.Load", false, func(b, _ []byte) {
			sinkUint32 = (*atomic.Uint32)(unsafe.Pointer(&b[len(b)-4])).Load()
		}},
	)
}
