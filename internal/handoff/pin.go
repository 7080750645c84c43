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
	if cpus := PickCPUs(1); len(cpus) == 1 {
		return cpus[0]
	}
	return -1
}

// PickCPUs returns up to n of the CPUs this process may run on, highest
// first (nil if the mask cannot be read): for -pin cross, the producer
// takes the first and the consumers the second.
func PickCPUs(n int) []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for cpu := len(set)*64 - 1; cpu >= 0 && len(cpus) < n; cpu-- {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus
}

// PinProcess pins every thread of this process to cpu (threads created
// later inherit it from their creator) and sets GOMAXPROCS to 1, as the
// runtime would have had the process started pinned (taskset): with more
// Ps than CPUs, idle Ps spin (sched_yield, nanosleep) on the one CPU the
// peer process needs. It returns a function that restores each thread's
// previous mask and GOMAXPROCS. sched_setaffinity(2) applies to one thread,
// and a Go program runs on several, so each is pinned by its id.
func PinProcess(cpu int) (restore func(), err error) {
	return pinProcess(cpu, true)
}

// pinProcess is PinProcess; without check it does not first make sure
// that cpu is in the process's mask: a consumer started by a producer
// already pinned elsewhere (-pin cross) inherits the producer's one-CPU
// mask, and may leave it.
func pinProcess(cpu int, check bool) (restore func(), err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, os.NewSyscallError("sched_getaffinity", err)
	}
	if check && !old.IsSet(cpu) {
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
