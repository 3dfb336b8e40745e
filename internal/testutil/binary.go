package testutil

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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

// PeakRSS is the most memory the process pid has had resident so far (VmHWM), in bytes.
// Linux only: elsewhere it returns an error.
func PeakRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.Join(errors.New("no VmHWM in /proc/"+strconv.Itoa(pid)+"/status"), sc.Err())
}
