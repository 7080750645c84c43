//go:build linux

package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

func init() {
	register(command{
		name: "inspect",
		args: "[-json] [-all | PID...]",
		help: "list the memfds that processes hold or map (like lsof, for memfds)",
		run:  runInspect,
	})
}

// memfdRow is one memfd a process holds through a descriptor (FD >= 0), or
// only maps, its descriptor closed (FD == -1).
type memfdRow struct {
	PID   int    `json:"pid"`
	FD    int    `json:"fd"`
	Name  string `json:"name"`
	Size  int64  `json:"size"`  // bytes; -1 when it cannot be read
	Seals string `json:"seals"` // memfd.Seals.String (e.g. "shrink|grow|write", "none"), or "?" when they cannot be read
	Maps  int    `json:"maps"`  // lines of /proc/PID/maps for this memfd; -1 when maps cannot be read

	id fileID
}

// fileID identifies a file as /proc/PID/maps does: device and inode.
type fileID struct {
	major, minor uint32
	ino          uint64
}

func statID(st *unix.Stat_t) fileID {
	dev := uint64(st.Dev) // Dev is not uint64 on every architecture
	return fileID{unix.Major(dev), unix.Minor(dev), st.Ino}
}

const unknown = "?"

func runInspect(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("inspect", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	asJSON := flags.Bool("json", false, "print one JSON object per line instead of a table")
	allUsers := flags.Bool("all", false, "without PIDs, inspect every user's processes, not only your own")
	printUsage := func() {
		fmt.Fprintln(stderr, "usage: sealbuf inspect [-json] [-all | PID...]")
		fmt.Fprintln(stderr, "Lists the memfds each process holds (and those it still maps after closing them, FD \"-\").")
		fmt.Fprintln(stderr, "Without PIDs, your own processes (those whose real UID is yours); with -all, every")
		fmt.Fprintln(stderr, "process whose /proc entries you may read (all of them as root).")
		flags.SetOutput(stderr)
		flags.PrintDefaults()
		flags.SetOutput(io.Discard)
	}
	if err := flags.Parse(args); err != nil {
		printUsage()
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	pids, err := parsePIDs(flags.Args())
	if err != nil {
		printUsage()
		return err
	}
	if *allUsers && len(pids) > 0 {
		printUsage()
		return errors.New("-all is for listing without PIDs: give PIDs or -all, not both")
	}
	scan := len(pids) == 0
	if scan {
		if pids, err = listPIDs(); err != nil {
			return err
		}
	}

	var rows []memfdRow
	unreadable := 0
	for _, pid := range pids {
		if scan && !*allUsers && !ownProcess(pid) {
			continue
		}
		warn := func(err error) { fmt.Fprintf(stderr, "pid %d: %v\n", pid, err) }
		r, err := inspectPID(pid, warn)
		if err != nil {
			// Scanning, skip quietly what this user may not read and what
			// exited meanwhile; a PID asked for is always answered.
			switch {
			case !scan:
				warn(err)
			case errors.Is(err, fs.ErrPermission):
				unreadable++
			case !errors.Is(err, errNoProcess):
				warn(err)
			}
			continue
		}
		rows = append(rows, r...)
	}
	if *allUsers && unreadable > 0 {
		fmt.Fprintf(stderr, "skipped %d processes whose descriptors you may not read: run as root to include them\n", unreadable)
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tFD\tNAME\tSIZE\tSEALS\tMAPS")
	for _, r := range rows {
		fd, maps := strconv.Itoa(r.FD), strconv.Itoa(r.Maps)
		if r.FD < 0 {
			fd = "-"
		}
		if r.Maps < 0 {
			maps = unknown
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.PID, fd, displayName(r.Name), humanSize(r.Size), r.Seals, maps)
	}
	return tw.Flush()
}

func parsePIDs(args []string) ([]int, error) {
	var pids []int
	for _, a := range args {
		pid, err := strconv.ParseUint(a, 10, 31)
		if err != nil || pid == 0 || strings.TrimLeft(a, "0123456789") != "" {
			if strings.HasPrefix(a, "-") {
				return nil, fmt.Errorf("bad PID %q: flags go before the PIDs", a)
			}
			return nil, fmt.Errorf("bad PID %q: want a positive process ID", a)
		}
		if !slices.Contains(pids, int(pid)) {
			pids = append(pids, int(pid))
		}
	}
	return pids, nil
}

// listPIDs returns the processes in /proc, in numerical order.
func listPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// ownProcess reports whether pid's real UID is this process's: the
// processes inspect lists without PIDs and without -all. A process that
// cannot be read (gone meanwhile) is not.
func ownProcess(pid int) bool {
	uid, err := procUID(pid)
	return err == nil && uid == os.Getuid()
}

// procUID returns the real UID of pid, from the Uid line of
// /proc/PID/status, which every user may read.
func procUID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1, procErr(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return -1, fmt.Errorf("/proc/%d/status has no Uid line", pid)
}

var errNoProcess = errors.New("no such process")

// procErr turns "open /proc/N/...: no such file or directory" into
// errNoProcess; other errors (permission denied…) keep their path.
func procErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return errNoProcess
	}
	return err
}

// inspectPID lists pid's memfds: one row per descriptor, then one per memfd
// mapped but no longer held. Per-descriptor trouble goes to warn; the error
// is for the process as a whole (gone, not readable).
func inspectPID(pid int, warn func(error)) ([]memfdRow, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return nil, procErr(err)
	}
	var rows []memfdRow
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		r, ok, err := inspectFD(pid, dir, fd)
		switch {
		case errors.Is(err, fs.ErrNotExist): // closed since the listing
		case errors.Is(err, fs.ErrPermission):
			return nil, err // the directory lists, but ptrace access is denied
		case err != nil:
			warn(err)
		case ok:
			rows = append(rows, r)
		}
	}

	maps, err := readMaps(dir + "/maps")
	if err != nil {
		if err = procErr(err); err == errNoProcess {
			return nil, err
		}
		warn(err)
		for i := range rows {
			rows[i].Maps = -1
		}
		return rows, nil
	}
	count := map[fileID]int{}
	for _, m := range maps {
		count[m.id]++
	}
	listed := map[fileID]bool{}
	for i := range rows {
		rows[i].Maps = count[rows[i].id]
		listed[rows[i].id] = true
	}
	var mappedOnly []memfdRow
	for _, m := range maps {
		if listed[m.id] {
			continue
		}
		listed[m.id] = true
		r := memfdRow{PID: pid, FD: -1, Name: m.name, Size: -1, Seals: unknown, Maps: count[m.id], id: m.id}
		// Without a descriptor, map_files still reaches the file (it needs
		// CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE); else size and seals stay unknown.
		if info, err := describe(fmt.Sprintf("%s/map_files/%x-%x", dir, m.start, m.end)); err == nil && info.id == m.id {
			r.Size, r.Seals = info.size, info.seals
		}
		mappedOnly = append(mappedOnly, r)
	}
	slices.SortFunc(mappedOnly, func(a, b memfdRow) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return cmp.Compare(a.id.ino, b.id.ino)
	})
	return append(rows, mappedOnly...), nil
}

// inspectFD describes descriptor fd of process pid (/proc/PID is dir), if
// it is a memfd (ok).
func inspectFD(pid int, dir string, fd int) (r memfdRow, ok bool, err error) {
	path := dir + "/fd/" + strconv.Itoa(fd)
	link, err := os.Readlink(path)
	if err != nil {
		return r, false, err
	}
	name, ok := memfdName(link)
	if !ok {
		return r, false, nil
	}
	info, err := describe(path)
	if err != nil {
		return r, false, err
	}
	return memfdRow{PID: pid, FD: fd, Name: name, Size: info.size, Seals: info.seals, id: info.id}, true, nil
}

// memfdName returns NAME for a /proc link or maps path "/memfd:NAME (deleted)"
// (hugetlb memfds read the same), and whether it names a memfd at all.
func memfdName(link string) (string, bool) {
	rest, ok := strings.CutPrefix(link, "/memfd:")
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(rest, " (deleted)"), true
}

type fileInfo struct {
	id    fileID
	size  int64
	seals string
}

// describe stats the file a /proc magic link (fd/N, map_files/A-B) points to
// and reads its seals. It fails only if the file cannot be stat'ed or is not
// a regular file; seals it cannot read are "?".
func describe(path string) (fileInfo, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileInfo{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileInfo{}, fmt.Errorf("%s: not a regular file (mode %#o)", path, st.Mode)
	}
	info := fileInfo{id: statID(&st), size: st.Size, seals: unknown}
	if s, err := readSeals(path, info.id); err == nil {
		info.seals = s.String()
	}
	return info, nil
}

// readSeals opens path read-only, just long enough for F_GET_SEALS. Opening
// needs root or the process's owner. O_NONBLOCK|O_NOCTTY keep the open
// harmless should the descriptor have been replaced by a FIFO or terminal
// since the stat; the fstat then refuses anything but the file stat'ed.
func readSeals(path string, want fileID) (memfd.Seals, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0) // os adds O_CLOEXEC
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var seals int
	var opErr error
	err = rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if opErr = unix.Fstat(int(fd), &st); opErr != nil {
			return
		}
		if statID(&st) != want {
			opErr = errors.New("descriptor replaced while inspecting")
			return
		}
		seals, opErr = unix.FcntlInt(fd, unix.F_GET_SEALS, 0)
	})
	if err != nil {
		return 0, err
	}
	if opErr != nil {
		return 0, opErr
	}
	return memfd.Seals(seals), nil
}

// mapping is one /proc/PID/maps line of a memfd.
type mapping struct {
	start, end uint64
	id         fileID
	name       string
}

func readMaps(path string) ([]mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var maps []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := parseMapsLine(sc.Text()); ok {
			maps = append(maps, m)
		}
	}
	return maps, sc.Err()
}

// parseMapsLine parses "START-END PERMS OFFSET MAJ:MIN INODE   PATH" (hex,
// hex, hex, decimal) and reports whether PATH is a memfd.
func parseMapsLine(line string) (mapping, bool) {
	var f [5]string
	rest := line
	for i := range f {
		var ok bool
		if f[i], rest, ok = strings.Cut(rest, " "); !ok {
			return mapping{}, false
		}
	}
	name, ok := memfdName(strings.TrimLeft(rest, " "))
	if !ok {
		return mapping{}, false
	}
	start, end, ok1 := strings.Cut(f[0], "-")
	maj, mnr, ok2 := strings.Cut(f[3], ":")
	if !ok1 || !ok2 {
		return mapping{}, false
	}
	var m mapping
	var major, minor uint64
	var errs [5]error
	m.start, errs[0] = strconv.ParseUint(start, 16, 64)
	m.end, errs[1] = strconv.ParseUint(end, 16, 64)
	major, errs[2] = strconv.ParseUint(maj, 16, 32)
	minor, errs[3] = strconv.ParseUint(mnr, 16, 32)
	m.id.ino, errs[4] = strconv.ParseUint(f[4], 10, 64)
	if errors.Join(errs[:]...) != nil {
		return mapping{}, false
	}
	m.id.major, m.id.minor, m.name = uint32(major), uint32(minor), name
	return m, true
}

// humanSize prints n bytes the way ls -h does, in binary units: 512B, 4.0KiB,
// 64MiB. Negative means unknown: "?".
func humanSize(n int64) string {
	if n < 0 {
		return unknown
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	div := 1.0
	var v float64
	var unit string
	for _, unit = range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		div *= 1024
		if v = float64(n) / div; v < 1023.5 {
			break
		}
	}
	if v < 9.95 {
		return strconv.FormatFloat(v, 'f', 1, 64) + unit
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + unit
}

// displayName keeps the table aligned whatever the name: an empty name, or
// one with control characters, spaces other than ' ' or invalid UTF-8, is
// printed quoted and escaped.
func displayName(name string) string {
	if name == "" || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(name)
	}
	return name
}
