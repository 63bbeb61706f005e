package auth

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// fileCheckInterval bounds how often a FileKeySet stats its file, so that a
// burst of calls costs one syscall rather than one each.
const fileCheckInterval = time.Second

// FileKeySet is a KeySet read from a JWKS file on disk. The file is re-read
// when its modification time or size changes, so keys can be rotated by
// replacing the file without restarting the server.
type FileKeySet struct {
	path string
	now  func() time.Time // replaced in tests to avoid sleeping

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	modTime   time.Time // of the last version read, good or bad
	size      int64
	lastCheck time.Time
}

// NewFileKeySet reads the JWKS at path. Unlike later reloads, a missing or
// malformed file is an error here: starting with no keys would refuse every
// caller while looking healthy.
func NewFileKeySet(path string) (*FileKeySet, error) {
	s := &FileKeySet{path: path, now: time.Now}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file: %w", err)
	}
	keys, err := readJWKSFile(path)
	if err != nil {
		return nil, err
	}
	s.keys, s.modTime, s.size, s.lastCheck = keys, fi.ModTime(), fi.Size(), s.now()
	return s, nil
}

// Keys implements KeySet. It never fails: when the file has become unusable
// the last good keys stay in force, so a botched rotation does not lock
// everyone out.
func (s *FileKeySet) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); now.Sub(s.lastCheck) >= fileCheckInterval {
		s.lastCheck = now
		s.reload()
	}
	return selectKeys(s.keys, kid), nil
}

// reload re-reads the file if it changed. A bad or missing version is
// remembered like a good one so that it is logged once, not on every check.
func (s *FileKeySet) reload() {
	fi, err := os.Stat(s.path)
	if err != nil {
		if s.size != -1 {
			slog.Warn("auth: cannot stat JWKS file; keeping previous keys", "path", s.path, "err", err)
		}
		// Forget the old version so that the file counts as changed when it
		// comes back, whatever its timestamp.
		s.modTime, s.size = time.Time{}, -1
		return
	}
	if fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return
	}
	s.modTime, s.size = fi.ModTime(), fi.Size()
	keys, err := readJWKSFile(s.path)
	if err != nil {
		slog.Warn("auth: JWKS file changed but is unusable; keeping previous keys", "path", s.path, "err", err)
		return
	}
	s.keys = keys
}

func readJWKSFile(path string) ([]jose.JSONWebKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file: %w", err)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return keys, nil
}
