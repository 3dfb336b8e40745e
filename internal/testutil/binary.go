package testutil

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// OperatorBinary is the path of the operator binary built from this checkout: $RWH_BINARY when
// set (make passes bin/resend-webhook-operator), else a `go build` into the test's temp dir.
func OperatorBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("RWH_BINARY"); p != "" {
		return p
	}
	path := filepath.Join(t.TempDir(), "resend-webhook-operator")
	cmd := exec.Command("go", "build", "-o", path, ".")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the operator binary: %v\n%s", err, out)
	}
	return path
}

// Memory is what /proc/<pid>/status says of a process's resident memory, in bytes.
type Memory struct {
	PeakRSS int64 // VmHWM: the most it ever had resident
	RSS     int64 // VmRSS: resident now
	Anon    int64 // RssAnon: of RSS, its own memory (heap, stacks)
	File    int64 // RssFile: of RSS, mapped files (the binary's code and data), shared with others
}

// ProcessMemory reads the resident memory of the process pid. Linux only: elsewhere it returns
// an error.
func ProcessMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	fields := map[string]*int64{"VmHWM:": &m.PeakRSS, "VmRSS:": &m.RSS, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	for line := range strings.Lines(string(b)) {
		name, value, _ := strings.Cut(line, "\t")
		if p := fields[name]; p != nil {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
			if err != nil {
				return Memory{}, fmt.Errorf("/proc/%d/status: %s %q: %w", pid, name, value, err)
			}
			*p = kb << 10
			delete(fields, name)
		}
	}
	if len(fields) > 0 {
		return Memory{}, fmt.Errorf("/proc/%d/status lacks %v", pid, slices.Sorted(maps.Keys(fields)))
	}
	return m, nil
}

// MiB formats n bytes in MiB with one decimal.
func MiB(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB" }

// ResetPeakRSS sets the process's VmHWM back to its current RSS (Linux' clear_refs), so that a
// later ProcessMemory reports the peak from now on (under load, say) rather than start-up's.
func ResetPeakRSS(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}
