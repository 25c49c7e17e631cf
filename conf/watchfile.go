package conf

import (
	"context"
	"os"
	"syscall"
	"time"
)

// WatchFile calls changed whenever the file at path changes, until ctx is
// done. It compares what os.Stat sees (which follows symlinks) every
// interval, so it sees in-place edits, editors' rename-over saves, and the
// symlink swap by which Kubernetes updates a mounted ConfigMap, without a
// file-notification dependency (issue 7). A file that briefly disappears
// mid-swap is not a change. since is the file as it was when it was
// loaded (Stat): a change made between loading and watching is reported
// at the first check, not missed.
func WatchFile(ctx context.Context, path string, since FileStamp, interval time.Duration, changed func()) {
	last := since
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cur, ok := stamp(path)
			if ok && cur != last {
				last = cur
				changed()
			}
		}
	}
}

// FileStamp identifies a version of a file: its inode, size and mtime.
type FileStamp struct {
	ino, dev uint64
	size     int64
	mtime    time.Time
}

// Stat returns the stamp of the file at path now (zero if it is missing).
func Stat(path string) FileStamp {
	s, _ := stamp(path)
	return s
}

func stamp(path string) (FileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileStamp{}, false
	}
	s := FileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino, s.dev = st.Ino, uint64(st.Dev)
	}
	return s, true
}
