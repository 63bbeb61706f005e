package api

import (
	"net"
	"sync"
	"time"

	"github.com/careteam/careteam/server/internal/audit"
)

// authFailureWindow is the interval over which one peer's failed
// authentications share one record.
const authFailureWindow = time.Minute

// authFailures keeps failed authentications on the audit trail without
// letting anyone who can reach the port grow it at will: the first from a
// peer address in a window is recorded at once; the others are counted,
// and recorded as one when the window ends, with how many there were.
type authFailures struct {
	mu     sync.Mutex
	byPeer map[string]*failureWindow
}

type failureWindow struct {
	start time.Time
	// last is the latest call not recorded; suppressed counts them.
	last       audit.Record
	suppressed int
}

func newAuthFailures() *authFailures { return &authFailures{byPeer: map[string]*failureWindow{}} }

func peerHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// admit reports whether the record r of a failed authentication is to be
// written now, and returns the summaries of windows that ended by now.
func (a *authFailures) admit(r audit.Record, now time.Time) (write bool, ended []audit.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ended = a.takeEnded(now, false)
	host := peerHost(r.Peer)
	if w := a.byPeer[host]; w != nil {
		w.last, w.suppressed = r, w.suppressed+1
		return false, ended
	}
	a.byPeer[host] = &failureWindow{start: now}
	return true, ended
}

// due returns the summaries of windows ended by now, or of all windows.
func (a *authFailures) due(now time.Time, all bool) []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.takeEnded(now, all)
}

func (a *authFailures) takeEnded(now time.Time, all bool) []audit.Record {
	var out []audit.Record
	for host, w := range a.byPeer {
		if !all && now.Sub(w.start) < authFailureWindow {
			continue
		}
		delete(a.byPeer, host)
		if w.suppressed > 0 {
			// The record is the window's last call, standing for the
			// others before it too.
			r := w.last
			r.Suppressed = w.suppressed - 1
			out = append(out, r)
		}
	}
	return out
}
