package nodeagent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAtomicDirSwapsDataLink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	d := &atomicDir{dir: dir}
	changed, err := d.write(map[string]file{"current": {[]byte("one"), 0o440}, "sub/nested": {[]byte("n"), 0o644}})
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	first, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil || !strings.HasPrefix(first, "..") {
		t.Fatalf("..data -> %q, %v", first, err)
	}
	for name, want := range map[string]string{"current": "one", "sub/nested": "n"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if target, _ := os.Readlink(filepath.Join(dir, "current")); target != filepath.Join(dataLink, "current") {
		t.Errorf("visible name links to %q, want through ..data", target)
	}
	if fi, err := os.Stat(filepath.Join(dir, "current")); err != nil || fi.Mode().Perm() != 0o440 {
		t.Errorf("mode %v, %v; want 0440", fi.Mode().Perm(), err)
	}

	if changed, err := d.write(map[string]file{"current": {[]byte("one"), 0o440}, "sub/nested": {[]byte("n"), 0o644}}); changed || err != nil {
		t.Errorf("same content rewritten: changed=%v err=%v", changed, err)
	}

	// An update: new content, one key gone, one new; the old timestamped directory goes.
	if _, err := d.write(map[string]file{"current": {[]byte("two"), 0o440}, "next": {[]byte("three"), 0o440}}); err != nil {
		t.Fatal(err)
	}
	second, _ := os.Readlink(filepath.Join(dir, dataLink))
	if second == first {
		t.Fatal("..data was not swapped")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "current")); string(b) != "two" {
		t.Errorf("current = %q after the update", b)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{dataLink, second, "current", "next"}; !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(want))) {
		t.Errorf("directory holds %v, want %v", names, want)
	}
}
