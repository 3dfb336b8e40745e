package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Release drops the resident pages of the executable's read-only, private file mappings that
// were never written (no anonymous pages in the mapping), so nothing but a page-in from the
// page cache can follow: the kernel reads such a page from the file again on the next touch.
// Writable mappings (the binary's data and bss) are left alone.
func Release() (Released, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return Released{}, err
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return Released{}, err
	}
	var r Released
	for _, m := range readOnlyMappings(smaps, exe) {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno != 0 {
			return r, fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		r.Bytes += m.resident
		r.Mappings++
	}
	return r, nil
}

type mapping struct {
	start, end uintptr
	resident   int64 // Rss
}

// readOnlyMappings parses smaps and returns the mappings of path that are private, not
// writable, and hold no anonymous (copied-on-write) page.
func readOnlyMappings(smaps []byte, path string) []mapping {
	var out []mapping
	var cur *mapping
	var anon bool
	flush := func() {
		if cur != nil && !anon {
			out = append(out, *cur)
		}
		cur, anon = nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if name, value, ok := strings.Cut(fields[0], ":"); ok && value == "" && len(fields) >= 2 {
			// An attribute of the current mapping, "Name: value kB".
			if cur == nil {
				continue
			}
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			switch {
			case err != nil:
			case name == "Rss":
				cur.resident = kb << 10
			case name == "Anonymous" && kb > 0:
				anon = true
			}
			continue
		}
		// A mapping header: "start-end perms offset dev inode [path]".
		flush()
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path {
			continue
		}
		perms := fields[1]
		if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		cur = &mapping{start: uintptr(start), end: uintptr(end)}
	}
	flush()
	return out
}
