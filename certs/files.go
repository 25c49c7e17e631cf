package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"github.com/agimo/agimo/conf"
)

// fileWatch polls one certificate/key file pair.
type fileWatch struct {
	src    source
	since  pairStamp          // the files as last loaded
	cancel context.CancelFunc // nil until started
}

func (w *fileWatch) stop() {
	if w.cancel != nil {
		w.cancel()
	}
}

// pairStamp identifies a version of a file pair.
type pairStamp struct{ cert, key conf.FileStamp }

func (s source) stamp() pairStamp {
	return pairStamp{conf.Stat(s.certFile), conf.Stat(s.keyFile)}
}

// loadFile reads and parses the pair.
func (s source) loadFile() (*tls.Certificate, error) {
	crt, err := os.ReadFile(s.certFile)
	if err != nil {
		return nil, fmt.Errorf("read tls_cert_file: %w", err)
	}
	key, err := os.ReadFile(s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("read tls_key_file: %w", err)
	}
	c, err := parsePair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("%s with %s: %w", s.certFile, s.keyFile, err)
	}
	return c, nil
}

// runFileWatch polls w's files every s.poll and reloads the pair when
// either changed: by inode, size and mtime, as conf.WatchFile does, so an
// in-place write, a rename over the file and the kubelet's symlink swap
// of a mounted Secret are all seen, with no file-notification dependency.
// A pair caught half-written fails to parse (key and certificate do not
// match), is counted, and is read again when the second file changes.
// s.mu is held and s.ctx set.
func (s *Store) runFileWatch(w *fileWatch) {
	ctx, cancel := context.WithCancel(s.ctx)
	w.cancel = cancel
	last := w.since
	s.wg.Go(func() {
		t := time.NewTicker(s.poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cur := w.src.stamp()
			if cur == last {
				continue
			}
			last = cur
			c, err := w.src.loadFile()
			s.update(w.src, w, c, err, "rotated")
		}
	})
}
