//go:build linux

package handoff

import (
	"encoding/binary"
	"fmt"
)

// seed is message k's pattern base: every byte of every message differs
// from the same byte of the message before it.
func seed(k uint64) uint64 { return (k + 1) * 0x9E3779B97F4A7C15 }

// Fill writes message k's pattern into p: the little-endian word at offset
// i (a multiple of 8) is seed(k)+i; a tail shorter than a word gets the
// leading bytes of its word. It writes every byte, a word at a time.
func Fill(p []byte, k uint64) {
	s := seed(k)
	i := 0
	// Eight words an iteration, bounds checked once: the benchmarks measure
	// the transport, so writing and checking run near memory speed.
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
	s := seed(k)
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
			break // the word loop below finds the first wrong byte
		}
	}
	for ; i+8 <= len(p); i += 8 {
		if binary.LittleEndian.Uint64(p[i:i+8]) != s+uint64(i) {
			return mismatch(p, k, i)
		}
	}
	if i < len(p) {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], s+uint64(i))
		for j := i; j < len(p); j++ {
			if p[j] != w[j-i] {
				return mismatch(p, k, i)
			}
		}
	}
	return nil
}

func mismatch(p []byte, k uint64, word int) error {
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], seed(k)+uint64(word))
	for j := word; j < len(p) && j < word+8; j++ {
		if p[j] != w[j-word] {
			return fmt.Errorf("message %d, byte %d of %d: got %#02x, want %#02x", k, j, len(p), p[j], w[j-word])
		}
	}
	return fmt.Errorf("message %d: mismatch near byte %d", k, word)
}
