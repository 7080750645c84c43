//go:build linux

package handoff

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// PickCPU returns the highest-numbered CPU this process may run on (CPU 0
// tends to take more interrupts), or -1 if the mask cannot be read.
func PickCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return -1
	}
	for cpu := len(set)*64 - 1; cpu >= 0; cpu-- {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	return -1
}

// PinProcess pins every thread of this process to cpu (threads created
// later inherit it from their creator) and sets GOMAXPROCS to 1, as the
// runtime would have had the process started pinned (taskset): with more
// Ps than CPUs, idle Ps spin (sched_yield, nanosleep) on the one CPU the
// peer process needs. It returns a function that restores each thread's
// previous mask and GOMAXPROCS. sched_setaffinity(2) applies to one thread,
// and a Go program runs on several, so each is pinned by its id.
func PinProcess(cpu int) (restore func(), err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, os.NewSyscallError("sched_getaffinity", err)
	}
	if !old.IsSet(cpu) {
		return nil, fmt.Errorf("handoff: pin to CPU %d: not in this process's CPU mask (%d CPUs allowed)", cpu, old.Count())
	}
	var set unix.CPUSet
	set.Set(cpu)
	// Twice: a thread started while the first pass ran may have inherited
	// the old mask.
	for range 2 {
		if err := setAll(&set); err != nil {
			return nil, fmt.Errorf("handoff: pin to CPU %d: %w", cpu, err)
		}
	}
	procs := runtime.GOMAXPROCS(1)
	return func() {
		setAll(&old)
		runtime.GOMAXPROCS(procs)
	}, nil
}

func setAll(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return os.NewSyscallError("sched_setaffinity", err)
		}
	}
	return nil
}
