//go:build linux

package handoff

import (
	"math/bits"
	"time"
)

// Latency is a histogram of per-message round trips with a fixed set of
// buckets: Record costs a few nanoseconds and never allocates, so every
// message of a measurement can be sampled without disturbing it. Buckets
// are log-linear (64 per power of two above 128 ns, exact below), so a
// quantile is within 1.6% of the true value. The zero value is empty and
// ready to use.
//
// Session.RunFor records every timed message into its Session's Latency;
// a mode whose producer times messages some other way (a batch, a stream)
// can call Record itself.
type Latency struct {
	counts [latBuckets]uint32
	n      uint64
}

const (
	latSubBits = 6
	latSub     = 1 << latSubBits // buckets per power of two
	latMaxBits = 40              // durations of 2^40 ns (18 min) and more share the last bucket
	latBuckets = (latMaxBits-latSubBits)*latSub + latSub
)

// latIndex returns the bucket of ns (≥ 0).
func latIndex(ns uint64) int {
	if ns < 2*latSub {
		return int(ns)
	}
	if ns >= 1<<latMaxBits {
		return latBuckets - 1
	}
	shift := bits.Len64(ns) - latSubBits - 1 // ≥ 1: ns>>shift is in [latSub, 2*latSub)
	return (shift+1)*latSub + int(ns>>shift) - latSub
}

// latValue returns the middle of bucket i, in nanoseconds.
func latValue(i int) float64 {
	if i < 2*latSub {
		return float64(i)
	}
	shift := i/latSub - 1
	lo := uint64(i%latSub+latSub) << shift
	return float64(lo) + float64(uint64(1)<<shift)/2
}

// Record adds one round trip.
func (l *Latency) Record(d time.Duration) {
	l.counts[latIndex(uint64(max(d, 0)))]++
	l.n++
}

// Count returns how many round trips were recorded.
func (l *Latency) Count() uint64 { return l.n }

// Quantile returns the q-quantile (0 < q ≤ 1) of the recorded round trips
// in nanoseconds: the smallest recorded value (to the bucket) that at
// least q of them do not exceed. It returns 0 when nothing was recorded.
func (l *Latency) Quantile(q float64) float64 {
	if l.n == 0 {
		return 0
	}
	rank := uint64(q*float64(l.n) + 0.5)
	rank = min(max(rank, 1), l.n)
	var seen uint64
	for i, c := range l.counts {
		seen += uint64(c)
		if seen >= rank {
			return latValue(i)
		}
	}
	return latValue(latBuckets - 1)
}

// Reset empties the histogram.
func (l *Latency) Reset() { *l = Latency{} }
