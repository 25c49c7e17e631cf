package core

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

// Release ends a read in progress through interrupt and returns only
// once it has returned; every read after fails; a body nobody reads is
// released without an interrupt.
func TestHeldBodyRelease(t *testing.T) {
	t.Run("read in progress", func(t *testing.T) {
		pr, pw := io.Pipe()
		interrupted := 0
		entered := &enteredReader{r: pr, entered: make(chan struct{})}
		b := NewHeldBody(entered, func() { interrupted++; pw.CloseWithError(errors.New("interrupted")) })
		readDone := make(chan error, 1)
		go func() {
			_, err := b.Read(make([]byte, 8))
			readDone <- err
		}()
		<-entered.entered // the read is in progress, blocked in the pipe
		b.Release()
		if !entered.returned.Load() {
			t.Fatal("Release returned before the read in progress did")
		}
		if err := <-readDone; err == nil || err.Error() != "interrupted" {
			t.Errorf("the read in progress returned %v; want the interrupt's error", err)
		}
		if interrupted != 1 || !b.Interrupted() {
			t.Errorf("interrupt called %d times, Interrupted %t; want 1, true", interrupted, b.Interrupted())
		}
		if _, err := b.Read(make([]byte, 8)); !errors.Is(err, errBodyReleased) {
			t.Errorf("read after Release: %v; want %v", err, errBodyReleased)
		}
		b.Release() // again: nothing happens
		if interrupted != 1 {
			t.Errorf("interrupt called %d times after a second Release; want 1", interrupted)
		}
	})
	t.Run("idle", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		b := NewHeldBody(pr, func() { t.Error("interrupt called with no read in progress") })
		b.Release()
		if b.Interrupted() {
			t.Error("Interrupted after a release with no read in progress")
		}
		if _, err := b.Read(make([]byte, 8)); !errors.Is(err, errBodyReleased) {
			t.Errorf("read after Release: %v; want %v", err, errBodyReleased)
		}
	})
	t.Run("nil", func(t *testing.T) {
		var b *HeldBody
		b.Release()
		if b.Interrupted() {
			t.Error("a nil HeldBody is Interrupted")
		}
	})
}

// enteredReader closes entered when its first Read starts, and notes
// when it returns.
type enteredReader struct {
	r        io.Reader
	entered  chan struct{}
	returned atomic.Bool
}

func (e *enteredReader) Read(p []byte) (int, error) {
	close(e.entered)
	defer e.returned.Store(true)
	return e.r.Read(p)
}
