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
// mid-swap is not a change.
func WatchFile(ctx context.Context, path string, interval time.Duration, changed func()) {
	last, _ := stamp(path)
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

type fileStamp struct {
	ino, dev uint64
	size     int64
	mtime    time.Time
}

func stamp(path string) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino, s.dev = st.Ino, uint64(st.Dev)
	}
	return s, true
}
