//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestBenchJSON runs the bench command briefly at one size and checks the
// -json line format and that every mode has a row or says on stderr why
// not. It asserts nothing about timings.
func TestBenchJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runBench([]string{"-sizes", "4K", "-time", "50ms", "-json"}, &stdout, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())

	rows := map[string]map[string]any{}
	for line := range strings.Lines(stdout.String()) {
		var row map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &row), "line %q", line)
		require.ElementsMatch(t, []string{"mode", "size", "ns_per_msg", "vs_socket", "p50_ns", "p99_ns"}, keys(row), "line %q", line)
		p50, _ := row["p50_ns"].(float64)
		p99, _ := row["p99_ns"].(float64)
		require.Positive(t, p50, "line %q", line)
		require.LessOrEqual(t, p50, p99, "line %q", line)
		mode, ok := row["mode"].(string)
		require.True(t, ok, "mode in %q", line)
		require.Equal(t, float64(4096), row["size"], "line %q", line)
		ns, _ := row["ns_per_msg"].(float64)
		require.Positive(t, ns, "line %q", line)
		vs, _ := row["vs_socket"].(float64)
		require.Positive(t, vs, "line %q", line)
		require.NotContains(t, rows, mode, "two rows for %s", mode)
		rows[mode] = row
	}
	require.Contains(t, rows, "socket")
	require.Equal(t, float64(1), rows["socket"]["vs_socket"])
	for _, mode := range benchModes {
		if mode == "sealed-hugetlb" || mode == "sealed-thp" {
			// 4 KiB is not a whole huge page: no row, and stderr says so.
			require.NotContains(t, rows, mode)
			require.Contains(t, stderr.String(), mode+", 4K: no row")
			continue
		}
		require.Contains(t, rows, mode, "stderr: %s", stderr.String())
	}
	// The pool modes are in the default table, with a row each.
	for _, mode := range []string{"pool", "pool-floor"} {
		require.Contains(t, benchModes, mode)
		require.Contains(t, rows, mode, "stderr: %s", stderr.String())
	}
}

// TestBenchJSONPool runs only the pool modes, at two sizes, with -modes:
// socket comes first as the reference, then one row per pool mode and size.
func TestBenchJSONPool(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runBench([]string{"-sizes", "4K,1M", "-time", "50ms", "-json", "-modes", "pool,pool-floor"}, &stdout, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())
	var got []string
	for line := range strings.Lines(stdout.String()) {
		var row struct {
			Mode     string  `json:"mode"`
			Size     int64   `json:"size"`
			NsPerMsg float64 `json:"ns_per_msg"`
			VsSocket float64 `json:"vs_socket"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &row), "line %q", line)
		require.Positive(t, row.NsPerMsg, "line %q", line)
		require.Positive(t, row.VsSocket, "line %q", line)
		got = append(got, row.Mode+"/"+sizeName(row.Size))
	}
	require.Equal(t, []string{"socket/4K", "pool/4K", "pool-floor/4K", "socket/1M", "pool/1M", "pool-floor/1M"}, got, "stderr: %s", stderr.String())
}

// benchRows runs the bench command with args (and -json) and returns its
// rows as mode/size, in order, and its stderr.
func benchRows(t *testing.T, args ...string) ([]benchRow, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := runBench(append(args, "-json"), &stdout, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())
	var rows []benchRow
	for line := range strings.Lines(stdout.String()) {
		var row benchRow
		require.NoError(t, json.Unmarshal([]byte(line), &row), "line %q", line)
		require.Positive(t, row.NsPerMsg, "line %q", line)
		require.Positive(t, row.VsSocket, "line %q", line)
		require.Positive(t, row.P50Ns, "line %q", line)
		require.LessOrEqual(t, row.P50Ns, row.P99Ns, "line %q", line)
		rows = append(rows, row)
	}
	return rows, stderr.String()
}

func rowNames(rows []benchRow) []string {
	var names []string
	for _, r := range rows {
		names = append(names, r.Mode+"/"+sizeName(r.Size))
	}
	return names
}

// TestBenchPinCross runs producer and consumer on two different CPUs.
func TestBenchPinCross(t *testing.T) {
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &set))
	if set.Count() < 2 {
		t.Skipf("-pin cross needs two CPUs, this process may use %d", set.Count())
	}
	rows, stderr := benchRows(t, "-sizes", "4K", "-time", "50ms", "-rounds", "1", "-pin", "cross", "-modes", "sealed,sealed-floor")
	require.Equal(t, []string{"socket/4K", "sealed/4K", "sealed-floor/4K"}, rowNames(rows), "stderr: %s", stderr)
}

// TestBenchConsumers hands each message to two consumers: the modes that
// fan out get a row, the others none and a line on stderr saying why.
func TestBenchConsumers(t *testing.T) {
	rows, stderr := benchRows(t, "-sizes", "4K", "-time", "50ms", "-rounds", "1", "-consumers", "2", "-modes", "sealed,sealed-floor,pool")
	require.Equal(t, []string{"socket/4K", "sealed/4K", "sealed-floor/4K"}, rowNames(rows), "stderr: %s", stderr)
	require.Contains(t, stderr, "pool, 4K: no row")
	require.Contains(t, stderr, "cannot hand one message to several consumers")
}

func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-pin", "elsewhere"},
		{"-consumers", "0"},
		{"-rounds", "0"},
		{"-modes", "nonsense"},
	} {
		var stdout, stderr bytes.Buffer
		require.Error(t, runBench(append(args, "-sizes", "4K", "-time", "10ms"), &stdout, &stderr), "%q", args)
		require.Empty(t, stdout.String(), "%q", args)
	}
}

func TestBenchTable(t *testing.T) {
	var out bytes.Buffer
	// The demo's modes.
	require.NoError(t, handoffTable(&out, []string{"socket", "sealed", "pool"}, []int64{4096}, 20e6))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4, "%s", out.String())
	require.True(t, strings.HasPrefix(lines[0], "size"), "%s", out.String())
	require.Contains(t, lines[1], "socket")
	require.Contains(t, lines[2], "sealed")
	require.Contains(t, lines[3], "pool")
}

func TestBenchSizes(t *testing.T) {
	got, err := parseSizes("4K,64KiB,1M,16MB, 3")
	require.NoError(t, err)
	require.Equal(t, []int64{4 << 10, 64 << 10, 1 << 20, 16 << 20, 3}, got)
	for _, bad := range []string{"", "0", "-4K", "4X", "K"} {
		_, err := parseSizes(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, "64M", sizeName(64<<20))
	require.Equal(t, "4097", sizeName(4097))
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
