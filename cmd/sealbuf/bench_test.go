//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
		require.ElementsMatch(t, []string{"mode", "size", "ns_per_msg", "vs_socket"}, keys(row), "line %q", line)
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
		if mode == "sealed-hugetlb" {
			// 4 KiB is not a whole huge page: no row, and stderr says so.
			require.NotContains(t, rows, mode)
			require.Contains(t, stderr.String(), "sealed-hugetlb, 4K: no row")
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
