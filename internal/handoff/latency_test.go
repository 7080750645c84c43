//go:build linux

package handoff

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLatencyBuckets(t *testing.T) {
	// Every value lands in a bucket whose middle is within 1.6% of it, and
	// buckets never go backwards.
	prev := -1
	for _, ns := range []uint64{0, 1, 63, 127, 128, 129, 200, 255, 256, 1000, 4095, 4096, 12345, 1e6, 987654321, 1 << 39, 1<<40 - 1} {
		i := latIndex(ns)
		require.GreaterOrEqual(t, i, prev, "ns %d", ns)
		require.Less(t, i, latBuckets, "ns %d", ns)
		prev = i
		got := latValue(i)
		require.InEpsilon(t, math.Max(float64(ns), 1), math.Max(got, 1), 1.0/latSub, "ns %d: bucket %d", ns, i)
	}
	require.Equal(t, latBuckets-1, latIndex(1<<62))
	// Consecutive buckets are contiguous: the bucket of a value just past
	// a bucket's range is the next one.
	for ns := uint64(100); ns < 1<<20; ns = ns*9/8 + 1 {
		require.LessOrEqual(t, latIndex(ns+1)-latIndex(ns), 1, "ns %d", ns)
	}
}

func TestLatencyQuantile(t *testing.T) {
	var l Latency
	require.Zero(t, l.Quantile(0.5))
	for i := 1; i <= 1000; i++ {
		l.Record(time.Duration(i) * time.Microsecond)
	}
	require.Equal(t, uint64(1000), l.Count())
	require.InEpsilon(t, 500e3, l.Quantile(0.5), 0.02)
	require.InEpsilon(t, 990e3, l.Quantile(0.99), 0.02)
	require.InEpsilon(t, 1000e3, l.Quantile(1), 0.02)
	l.Record(-time.Second) // clamped to 0
	require.Equal(t, uint64(1001), l.Count())
	l.Reset()
	require.Zero(t, l.Count())
	require.Zero(t, l.Quantile(0.99))
}

func TestLatencyRecordAllocs(t *testing.T) {
	var l Latency
	require.Zero(t, testing.AllocsPerRun(100, func() { l.Record(1234) }))
}
