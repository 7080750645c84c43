//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

const (
	roleInspectHolder = "inspect-holder" // holds known memfds until stdin closes
	roleInspectExit   = "inspect-exit"   // exits at once
)

func init() {
	testChildren[roleInspectHolder] = inspectHolder
	testChildren[roleInspectExit] = func() int { return 0 }
}

// The holder child's memfds.
const (
	sealedName, sealedSize = "inspect-sealed", 4096     // sealed shrink|grow|write, never mapped
	mappedName, mappedSize = "inspect-mapped", 64 << 10 // unsealed, mapped twice
	goneName, goneSize     = "inspect-gone", 8192       // mapped once, descriptor closed
)

// inspectHolder creates the memfds above, prints "ready SEALEDFD MAPPEDFD"
// and waits for stdin to close.
func inspectHolder() int {
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", roleInspectHolder, what, err)
		return 1
	}
	sealed, err := holderMemfd(sealedName, sealedSize)
	if err != nil {
		return fail("create sealed", err)
	}
	if _, err := unix.FcntlInt(uintptr(sealed), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		return fail("add seals", err)
	}
	mapped, err := holderMemfd(mappedName, mappedSize)
	if err != nil {
		return fail("create mapped", err)
	}
	for range 2 {
		if _, err := unix.Mmap(mapped, 0, mappedSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return fail("mmap mapped", err)
		}
	}
	gone, err := holderMemfd(goneName, goneSize)
	if err != nil {
		return fail("create gone", err)
	}
	if _, err := unix.Mmap(gone, 0, goneSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail("mmap gone", err)
	}
	if err := unix.Close(gone); err != nil {
		return fail("close gone", err)
	}
	fmt.Printf("ready %d %d\n", sealed, mapped)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// holderMemfd creates a sealable memfd of size bytes; no-exec where the
// kernel knows MFD_NOEXEC_SEAL (it adds the exec seal, which the tests mask).
func holderMemfd(name string, size int64) (int, error) {
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate(name, flags|unix.MFD_NOEXEC_SEAL)
	if errors.Is(err, unix.EINVAL) { // before Linux 6.3
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return -1, err
	}
	return fd, unix.Ftruncate(fd, size)
}

type holder struct {
	pid              int
	sealedFD, mapFD  int
	mapFilesReadable bool // whether this process may stat the holder's /proc/PID/map_files
}

// startHolder re-executes the test binary as roleInspectHolder and waits for
// its "ready"; the child is killed when the test ends.
func startHolder(t *testing.T) holder {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	return startHolderCmd(t, exec.Command(exe))
}

// startHolderAs is startHolder for a holder running as another user, uid:
// it runs a copy of the test binary that the user may execute. Only root
// may start it.
func startHolderAs(t *testing.T, uid uint32) holder {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "inspect-as")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	b, err := os.ReadFile(exe)
	require.NoError(t, err)
	cp := dir + "/inspect.test"
	require.NoError(t, os.WriteFile(cp, b, 0o755))
	cmd := exec.Command(cp)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	return startHolderCmd(t, cmd)
}

func startHolderCmd(t *testing.T, cmd *exec.Cmd) holder {
	t.Helper()
	cmd.Env = append(os.Environ(), testChildEnv+"="+roleInspectHolder)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "holder child exited before ready")
	h := holder{pid: cmd.Process.Pid}
	_, err = fmt.Sscanf(line, "ready %d %d\n", &h.sealedFD, &h.mapFD)
	require.NoError(t, err, "holder said %q", line)

	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/map_files", h.pid))
	if err == nil && len(ents) > 0 {
		_, err = os.Stat(fmt.Sprintf("/proc/%d/map_files/%s", h.pid, ents[0].Name()))
		h.mapFilesReadable = err == nil
	}
	return h
}

func runInspectArgs(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runInspect(args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// decodeRows parses -json output, checking that each line is one object with
// exactly the documented keys.
func decodeRows(t *testing.T, out string) []memfdRow {
	t.Helper()
	var rows []memfdRow
	for line := range strings.Lines(out) {
		var keys map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &keys), "line %q", line)
		require.ElementsMatch(t, []string{"pid", "fd", "name", "size", "seals", "maps"}, mapKeys(keys), "line %q", line)
		var r memfdRow
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		rows = append(rows, r)
	}
	return rows
}

func mapKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func rowsOf(rows []memfdRow, pid int) map[string]memfdRow {
	byName := map[string]memfdRow{}
	for _, r := range rows {
		if r.PID == pid {
			byName[r.Name] = r
		}
	}
	return byName
}

// requireSeals checks seals printed as memfd.Seals.String, ignoring the exec
// seal that MFD_NOEXEC_SEAL adds on newer kernels.
func requireSeals(t *testing.T, want memfd.Seals, got string) {
	t.Helper()
	s, err := memfd.ParseSeals(got)
	require.NoError(t, err)
	require.Equal(t, want, s&^memfd.SealExec, "seals %q", got)
}

// requireHolderRows checks the holder's three memfds in JSON rows.
func requireHolderRows(t *testing.T, h holder, rows []memfdRow) {
	t.Helper()
	byName := rowsOf(rows, h.pid)
	require.Len(t, byName, 3, "rows: %+v", rows)

	sealed := byName[sealedName]
	require.Equal(t, h.sealedFD, sealed.FD)
	require.EqualValues(t, sealedSize, sealed.Size)
	requireSeals(t, memfd.SealShrink|memfd.SealGrow|memfd.SealWrite, sealed.Seals)
	require.Equal(t, 0, sealed.Maps)

	mapped := byName[mappedName]
	require.Equal(t, h.mapFD, mapped.FD)
	require.EqualValues(t, mappedSize, mapped.Size)
	requireSeals(t, 0, mapped.Seals)
	require.Equal(t, 2, mapped.Maps)

	gone := byName[goneName]
	require.Equal(t, -1, gone.FD)
	require.Equal(t, 1, gone.Maps)
	if h.mapFilesReadable {
		require.EqualValues(t, goneSize, gone.Size)
		requireSeals(t, 0, gone.Seals)
	} else {
		require.EqualValues(t, -1, gone.Size)
		require.Equal(t, "?", gone.Seals)
	}
}

func TestInspectJSON(t *testing.T) {
	h := startHolder(t)
	out, errOut, err := runInspectArgs(t, "-json", strconv.Itoa(h.pid))
	require.NoError(t, err)
	require.Empty(t, errOut)
	rows := decodeRows(t, out)
	require.Len(t, rows, 3, "output:\n%s", out)
	requireHolderRows(t, h, rows)
	// Descriptors in order, the mapped-only memfd last.
	require.Equal(t, -1, rows[2].FD)
	require.Less(t, rows[0].FD, rows[1].FD)
}

func TestInspectTable(t *testing.T) {
	h := startHolder(t)
	out, errOut, err := runInspectArgs(t, strconv.Itoa(h.pid))
	require.NoError(t, err)
	require.Empty(t, errOut)

	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, "output:\n%s", out)
	require.Regexp(t, `^PID +FD +NAME +SIZE +SEALS +MAPS$`, lines[0])

	// Columns are aligned: every field starts where its header does.
	cols := regexp.MustCompile(`\S+`).FindAllStringIndex(lines[0], -1)
	byName := map[string][]string{}
	for _, line := range lines[1:] {
		fields := regexp.MustCompile(`\S+`).FindAllStringIndex(line, -1)
		require.Len(t, fields, len(cols), "line %q", line)
		var words []string
		for i, f := range fields {
			require.Equal(t, cols[i][0], f[0], "column %d of %q", i, line)
			words = append(words, line[f[0]:f[1]])
		}
		byName[words[2]] = words
	}
	pid := strconv.Itoa(h.pid)
	goneSizeText, goneSeals := "8.0KiB", ""
	if !h.mapFilesReadable {
		goneSizeText, goneSeals = "?", "?"
	}
	for name, want := range map[string][]string{
		sealedName: {pid, strconv.Itoa(h.sealedFD), sealedName, "4.0KiB", "", "0"},
		mappedName: {pid, strconv.Itoa(h.mapFD), mappedName, "64KiB", "", "2"},
		goneName:   {pid, "-", goneName, goneSizeText, goneSeals, "1"},
	} {
		got := byName[name]
		require.Len(t, got, 6, "no row for %s:\n%s", name, out)
		seals := got[4]
		got[4] = want[4]
		require.Equal(t, want, got)
		switch {
		case want[4] == "?":
			require.Equal(t, "?", seals)
		case name == sealedName:
			requireSeals(t, memfd.SealShrink|memfd.SealGrow|memfd.SealWrite, seals)
		default:
			requireSeals(t, 0, seals)
		}
	}
}

// TestInspectOwnProcesses: without PIDs, inspect lists this user's
// processes (and so the holder's memfds), with -all too.
func TestInspectOwnProcesses(t *testing.T) {
	h := startHolder(t)
	for _, args := range [][]string{{"-json"}, {"-json", "-all"}} {
		out, _, err := runInspectArgs(t, args...)
		require.NoError(t, err)
		rows := decodeRows(t, out)
		requireHolderRows(t, h, rows)
		if len(args) == 1 {
			for _, r := range rows {
				uid, err := procUID(r.PID)
				if err == nil { // not exited meanwhile
					require.Equal(t, os.Getuid(), uid, "row of another user's process without -all: %+v", r)
				}
			}
		}
	}
	_, errOut, err := runInspectArgs(t, "-all", strconv.Itoa(h.pid))
	require.ErrorContains(t, err, "give PIDs or -all, not both")
	require.Contains(t, errOut, "usage: sealbuf inspect")
}

// TestInspectOtherUsers: another user's process is listed with -all or by
// PID, not by default. Root only: it starts a holder as nobody.
func TestInspectOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	const nobody = 65534
	h := startHolderAs(t, nobody)
	uid, err := procUID(h.pid)
	require.NoError(t, err)
	require.Equal(t, nobody, uid)

	out, _, err := runInspectArgs(t, "-json")
	require.NoError(t, err)
	require.Empty(t, rowsOf(decodeRows(t, out), h.pid), "another user's process without -all")

	out, _, err = runInspectArgs(t, "-json", "-all")
	require.NoError(t, err)
	requireHolderRows(t, h, decodeRows(t, out))

	out, _, err = runInspectArgs(t, "-json", strconv.Itoa(h.pid))
	require.NoError(t, err)
	requireHolderRows(t, h, decodeRows(t, out))
}

func TestInspectVanishedPID(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), testChildEnv+"="+roleInspectExit)
	require.NoError(t, cmd.Run())
	gone := cmd.Process.Pid // reaped: the PID names no process now

	out, errOut, err := runInspectArgs(t, strconv.Itoa(gone))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("pid %d: no such process\n", gone), errOut)
	require.Regexp(t, `^PID +FD +NAME +SIZE +SEALS +MAPS\n$`, out)

	// Not fatal: the other processes asked for are still listed.
	h := startHolder(t)
	out, errOut, err = runInspectArgs(t, "-json", strconv.Itoa(gone), strconv.Itoa(h.pid))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("pid %d: no such process\n", gone), errOut)
	requireHolderRows(t, h, decodeRows(t, out))
}

func TestInspectBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"abc"},
		{"0"},
		{"-1"},
		{"+5"},
		{"12x"},
		{"99999999999999999999"},
		{"-bogus"},
		{"-json=maybe"},
		{"1", "-json"}, // flags go first
	} {
		out, errOut, err := runInspectArgs(t, args...)
		require.Error(t, err, "args %q", args)
		require.Empty(t, out, "args %q", args)
		require.Contains(t, errOut, "usage: sealbuf inspect", "args %q", args)
	}

	out, errOut, err := runInspectArgs(t, "-h")
	require.NoError(t, err)
	require.Empty(t, out)
	require.Contains(t, errOut, "-json")
	require.Contains(t, errOut, "-all")
}

func TestInspectHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		-1:          "?",
		0:           "0B",
		1023:        "1023B",
		1024:        "1.0KiB",
		1536:        "1.5KiB",
		4096:        "4.0KiB",
		10 << 10:    "10KiB",
		10<<10 - 1:  "10KiB",
		64 << 10:    "64KiB",
		1<<20 - 1:   "1.0MiB",
		64 << 20:    "64MiB",
		3 << 30:     "3.0GiB",
		1 << 62:     "4.0EiB",
		1<<63 - 1:   "8.0EiB",
		1000 << 20:  "1000MiB",
		1023 << 20:  "1023MiB",
		1<<30 - 512: "1.0GiB",
	} {
		require.Equal(t, want, humanSize(n), "humanSize(%d)", n)
	}
}

func TestInspectParseMapsLine(t *testing.T) {
	m, ok := parseMapsLine("7f3c2a400000-7f3c2a410000 rw-s 00000000 00:01 1234                       /memfd:my buf (deleted)")
	require.True(t, ok)
	require.Equal(t, mapping{start: 0x7f3c2a400000, end: 0x7f3c2a410000, id: fileID{0, 1, 1234}, name: "my buf"}, m)

	for _, line := range []string{
		"7f3c2a400000-7f3c2a410000 r-xp 00000000 fd:00 52 /usr/lib/libc.so.6",
		"7f3c2a400000-7f3c2a410000 rw-p 00000000 00:00 0 ",
		"7ffd1c5e0000-7ffd1c601000 rw-p 00000000 00:00 0                          [stack]",
		"garbage /memfd:x (deleted)",
	} {
		_, ok := parseMapsLine(line)
		require.False(t, ok, line)
	}
}
