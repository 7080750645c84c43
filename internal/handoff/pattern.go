//go:build linux

package handoff

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// seed is message k's pattern base: every byte of every message differs
// from the same byte of the message before it.
func seed(k uint64) uint64 { return (k + 1) * 0x9E3779B97F4A7C15 }

// block is the pattern's period. Message k's little-endian word at offset
// i (a multiple of 8) is seed(k) + i mod block, except the first word of
// every block, which is seed(k) + i: every byte depends on the message,
// and every block carries its own offset, so a block read from the wrong
// place fails too. A tail shorter than a word gets the leading bytes of
// its word.
//
// The period lets Fill and Check run at memory speed: the first block is
// written (checked) a word at a time, every later one is a copy of it
// (compared with it) by the runtime's vectorised memmove (memequal), and
// its first word is stamped (checked) alone. Past the first MiB, Fill
// copies whole MiBs (see chunk). The benchmarks measure the
// transport, so the work every mode does on every byte is kept as cheap as
// a producer that copies its data in: a word-at-a-time loop ran at about
// half of memmove's speed and hid half of what the transport costs.
const block = 4096

// want returns message k's expected word at offset i (a multiple of 8).
func want(k uint64, i int) uint64 {
	if i%block == 0 {
		return seed(k) + uint64(i)
	}
	return seed(k) + uint64(i%block)
}

// chunk is the size of Fill's copies past the first MiB: the runtime's
// memmove writes copies of 1 MiB and more with non-temporal stores (on
// amd64 with AVX), as it does for a producer that copies a large frame
// in, which saves reading every destination line before writing it.
const chunk = 1 << 20

// Fill writes message k's pattern into p, every byte of it.
func Fill(p []byte, k uint64) {
	head := p[:min(len(p), chunk)]
	fillBlocks(head, k)
	for o := chunk; o < len(p); o += chunk {
		n := copy(p[o:], head)
		for b := o + block; b < o+n; b += block {
			stamp(p, k, b)
		}
		stamp(p, k, o)
	}
}

// stamp writes the first word of the block at offset o (a tail shorter
// than a word gets its leading bytes).
func stamp(p []byte, k uint64, o int) {
	if len(p)-o >= 8 {
		binary.LittleEndian.PutUint64(p[o:], want(k, o))
		return
	}
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], want(k, o))
	copy(p[o:], w[:])
}

// fillBlocks writes the pattern into p (at most a chunk): the first block
// a word at a time, the others as copies of it, stamped.
func fillBlocks(p []byte, k uint64) {
	first := p[:min(len(p), block)]
	fillWords(first, seed(k))
	for o := block; o < len(p); o += block {
		copy(p[o:], first)
		stamp(p, k, o)
	}
}

// fillWords writes word s+i at every offset i of p (the first block).
func fillWords(p []byte, s uint64) {
	i := 0
	// Eight words an iteration, bounds checked once.
	for ; i+64 <= len(p); i += 64 {
		q := p[i : i+64 : i+64]
		v := s + uint64(i)
		binary.LittleEndian.PutUint64(q[0:8], v)
		binary.LittleEndian.PutUint64(q[8:16], v+8)
		binary.LittleEndian.PutUint64(q[16:24], v+16)
		binary.LittleEndian.PutUint64(q[24:32], v+24)
		binary.LittleEndian.PutUint64(q[32:40], v+32)
		binary.LittleEndian.PutUint64(q[40:48], v+40)
		binary.LittleEndian.PutUint64(q[48:56], v+48)
		binary.LittleEndian.PutUint64(q[56:64], v+56)
	}
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:i+8], s+uint64(i))
	}
	if i < len(p) {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], s+uint64(i))
		copy(p[i:], w[:])
	}
}

// Check reads every byte of p and returns an error naming the first one
// that is not message k's pattern.
func Check(p []byte, k uint64) error {
	first := p[:min(len(p), block)]
	if !wordsOK(first, seed(k)) {
		return mismatch(p, k, 0)
	}
	for o := block; o < len(p); o += block {
		b := p[o:min(o+block, len(p))]
		if len(b) < 8 {
			return checkSlow(p, k, o)
		}
		if binary.LittleEndian.Uint64(b) != want(k, o) || !bytes.Equal(b[8:], first[8:len(b)]) {
			return mismatch(p, k, o)
		}
	}
	return nil
}

// wordsOK reports whether p holds word s+i at every offset i.
func wordsOK(p []byte, s uint64) bool {
	i := 0
	for ; i+64 <= len(p); i += 64 {
		q := p[i : i+64 : i+64]
		v := s + uint64(i)
		d := (binary.LittleEndian.Uint64(q[0:8]) ^ v) |
			(binary.LittleEndian.Uint64(q[8:16]) ^ (v + 8)) |
			(binary.LittleEndian.Uint64(q[16:24]) ^ (v + 16)) |
			(binary.LittleEndian.Uint64(q[24:32]) ^ (v + 24)) |
			(binary.LittleEndian.Uint64(q[32:40]) ^ (v + 32)) |
			(binary.LittleEndian.Uint64(q[40:48]) ^ (v + 40)) |
			(binary.LittleEndian.Uint64(q[48:56]) ^ (v + 48)) |
			(binary.LittleEndian.Uint64(q[56:64]) ^ (v + 56))
		if d != 0 {
			return false
		}
	}
	for ; i+8 <= len(p); i += 8 {
		if binary.LittleEndian.Uint64(p[i:i+8]) != s+uint64(i) {
			return false
		}
	}
	if i < len(p) {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], s+uint64(i))
		return bytes.Equal(p[i:], w[:len(p)-i])
	}
	return true
}

// mismatch finds the first wrong byte at or after from (which the fast
// comparison found wrong somewhere) and names it.
func mismatch(p []byte, k uint64, from int) error {
	if err := checkSlow(p, k, from); err != nil {
		return err
	}
	return fmt.Errorf("message %d: mismatch after byte %d", k, from)
}

// checkSlow compares p from offset from (a multiple of 8) byte by byte.
func checkSlow(p []byte, k uint64, from int) error {
	var w [8]byte
	for i := from; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(w[:], want(k, i))
		for j := i; j < len(p) && j < i+8; j++ {
			if p[j] != w[j-i] {
				return fmt.Errorf("message %d, byte %d of %d: got %#02x, want %#02x", k, j, len(p), p[j], w[j-i])
			}
		}
	}
	return nil
}
