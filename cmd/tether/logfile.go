package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/zap"
)

// logFile is the [log] file writer: a zapcore.WriteSyncer appending to a
// path that Reopen opens again, for logrotate's pattern (rename the file,
// then SIGUSR1: new lines go to a new file at the same path). Each Write
// is one whole zap entry and runs under mu, so a line goes entirely to the
// old file or entirely to the new one.
type logFile struct {
	path string

	mu sync.Mutex
	f  *os.File // nil after Close
}

// logFileMode is the mode a new log file is created with (before umask):
// the service's group may read it, nobody else.
const logFileMode = 0o640

var errLogFileClosed = errors.New("log file closed")

func openLogFile(path string) (*logFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logFileMode)
	if err != nil {
		return nil, fmt.Errorf("log: file: %w", err)
	}
	return f, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, errLogFileClosed
	}
	return l.f.Write(p)
}

func (l *logFile) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errLogFileClosed
	}
	return l.f.Sync()
}

// Reopen opens the path again and swaps the new file in. The new file is
// opened before the lock is taken, so writers wait only for the swap; when
// it cannot be opened the old file stays in use and the error is returned.
// An error is only ever "the old file is still in use".
func (l *logFile) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	if old == nil { // closed meanwhile
		l.mu.Unlock()
		return errors.Join(errLogFileClosed, f.Close())
	}
	l.f = f
	l.mu.Unlock()
	// Nothing can write to old any more: flush it (the rotated file may be
	// compressed next) and close it. Their errors change nothing: the new
	// file is in use, and a line written to old was already accepted.
	_ = old.Sync()
	_ = old.Close()
	return nil
}

// Close closes the file; later writes fail.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// reopenOnSIGUSR1 reopens lf on every SIGUSR1 until stop is called (stop
// waits for the goroutine). A reopen that fails is logged (to the old
// file, still in use). With no log file (lf nil, logging to stderr) the
// signal is only logged: registered, it no longer kills the process,
// which is what a logrotate postrotate that fires anyway needs.
func reopenOnSIGUSR1(lf *logFile, logger *zap.Logger) (stop func()) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	quit, done := make(chan struct{}), make(chan struct{})
	go logReopener(lf, logger, usr1, quit, done)
	return func() {
		signal.Stop(usr1)
		close(quit)
		<-done
	}
}

func logReopener(lf *logFile, logger *zap.Logger, usr1 <-chan os.Signal, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-usr1:
			if lf == nil {
				logger.Info("SIGUSR1: no log.file to reopen; logging to stderr")
				continue
			}
			if err := lf.Reopen(); err != nil {
				logger.Error("SIGUSR1: cannot reopen the log file; still writing to the old one", zap.String("file", lf.path), zap.Error(err))
				continue
			}
			logger.Info("SIGUSR1: log file reopened", zap.String("file", lf.path))
		case <-quit:
			return
		}
	}
}
