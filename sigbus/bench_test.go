//go:build linux

package sigbus_test

import (
	"testing"

	"github.com/sealbuf/sealbuf/sigbus"
)

// BenchmarkGuard measures what a guard adds to an access and what a
// recovered fault costs. The mappings are populated before timing.
func BenchmarkGuard(b *testing.B) {
	f := newMemfd(b, mapSize)
	m := mapShared(b, f, mapSize)
	dst := make([]byte, mapSize)
	copy(dst, m) // populate the pages
	_, cut := truncatedMapping(b)

	b.Run("unguarded-1B", func(b *testing.B) {
		for b.Loop() {
			sinkByte = m[100]
		}
	})
	b.Run("guarded-1B", func(b *testing.B) {
		for b.Loop() {
			if err := sigbus.Guard(m, func() { sinkByte = m[100] }); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{4 << 10, 1 << 20} {
		name := map[int]string{4 << 10: "4KiB", 1 << 20: "1MiB"}[n]
		b.Run("unguarded-"+name+"-copy", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(dst[:n], m[:n])
			}
		})
		b.Run("guarded-"+name+"-copy", func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if err := sigbus.Guard(m, func() { copy(dst[:n], m[:n]) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("fault-1B", func(b *testing.B) {
		for b.Loop() {
			if sigbus.Guard(cut, func() { sinkByte = cut[page] }) == nil {
				b.Fatal("no fault")
			}
		}
	})
	b.Run("fault-1MiB-copy", func(b *testing.B) {
		for b.Loop() {
			if sigbus.Guard(cut, func() { copy(dst, cut) }) == nil {
				b.Fatal("no fault")
			}
		}
	})
}
