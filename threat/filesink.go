package threat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
)

// fileSinkBuffer is the write buffer of a file sink: one write system call
// carries many events.
const fileSinkBuffer = 256 << 10

// fileSink appends events as JSON lines to a file, rotating it by size.
type fileSink struct {
	path     string
	maxBytes int64
	keep     int

	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
	line []byte // reused encoding buffer
	// closed is set by Close; f is also nil after a failed rotation, when
	// the next Deliver tries to reopen the file.
	closed bool
}

// NewFileSink returns a Sink that appends one JSON event per line to path,
// creating it with mode 0600 (events name clients and devices). When a write
// would take the file past maxBytes it is rotated first: path becomes
// path.1, path.1 becomes path.2, and so on up to path.keep; older files are
// removed. maxBytes <= 0 disables rotation; keep <= 0 keeps no old files;
// an event longer than maxBytes gets a file of its own.
// Each batch is written with one buffered write and flushed, so a reader
// tailing the file sees whole lines; Close also syncs the file to disk.
func NewFileSink(path string, maxBytes int64, keep int) (Sink, error) {
	if path == "" {
		return nil, errors.New("event file sink: empty path")
	}
	s := &fileSink{path: path, maxBytes: maxBytes, keep: keep}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileSink) Name() string { return "file:" + s.path }

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("event file sink: %w", err)
	}
	// OpenFile's mode applies only to a new file; an existing one may
	// have been created looser by hand.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("event file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("event file sink: %w", err)
	}
	s.f = f
	s.size = st.Size()
	if s.w == nil {
		s.w = bufio.NewWriterSize(f, fileSinkBuffer)
	} else {
		s.w.Reset(f)
	}
	return nil
}

func (s *fileSink) Deliver(_ context.Context, batch []*Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("event file sink %s: closed", s.path)
	}
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	var errs []error
	for _, e := range batch {
		line, err := e.AppendJSON(s.line[:0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.line = append(line, '\n')
		if s.maxBytes > 0 && s.size > 0 && s.size+int64(len(s.line)) > s.maxBytes {
			if err := s.rotate(); err != nil {
				return err
			}
		}
		n, err := s.w.Write(s.line)
		s.size += int64(n)
		if err != nil {
			return fmt.Errorf("event file sink %s: %w", s.path, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("event file sink %s: %w", s.path, err)
	}
	return errors.Join(errs...)
}

// rotate closes the current file, shifts path.i to path.i+1 (dropping the
// oldest) and path to path.1, and opens a fresh path. When a rename fails it
// still reopens path, so one bad rotation does not stop the sink for good.
func (s *fileSink) rotate() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("event file sink %s: rotating: %w", s.path, err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("event file sink %s: rotating: %w", s.path, err)
	}
	s.f = nil
	shiftErr := s.shift()
	if err := s.open(); err != nil {
		return errors.Join(shiftErr, err)
	}
	if shiftErr != nil {
		return fmt.Errorf("event file sink %s: rotating: %w", s.path, shiftErr)
	}
	return nil
}

func (s *fileSink) shift() error {
	if s.keep <= 0 {
		return ignoreNotExist(os.Remove(s.path))
	}
	if err := ignoreNotExist(os.Remove(s.backup(s.keep))); err != nil {
		return err
	}
	for i := s.keep - 1; i >= 1; i-- {
		if err := ignoreNotExist(os.Rename(s.backup(i), s.backup(i+1))); err != nil {
			return err
		}
	}
	return os.Rename(s.path, s.backup(1))
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s *fileSink) backup(i int) string { return s.path + "." + strconv.Itoa(i) }

func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.w.Flush(), s.f.Sync(), s.f.Close())
	s.f = nil
	if err != nil {
		return fmt.Errorf("event file sink %s: %w", s.path, err)
	}
	return nil
}
