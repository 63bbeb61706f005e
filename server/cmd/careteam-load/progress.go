package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress keeps one live status line on stderr: rewritten in place on a
// terminal, printed every few seconds otherwise (a log file should not
// fill with carriage returns).
type progress struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	last  time.Time
	shown int // width of the line on screen
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// update shows line, at most every quarter second on a terminal and every
// five seconds elsewhere.
func (p *progress) update(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	every := 5 * time.Second
	if p.tty {
		every = 250 * time.Millisecond
	}
	if time.Since(p.last) < every {
		return
	}
	p.last = time.Now()
	p.show(fmt.Sprintf(format, args...), false)
}

// done ends the current step with a final line that stays.
func (p *progress) done(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.show(fmt.Sprintf(format, args...), true)
	p.last = time.Time{}
}

// note prints a line of its own (a warning), keeping the status line
// below it.
func (p *progress) note(format string, args ...any) {
	p.done(format, args...)
}

func (p *progress) show(line string, final bool) {
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := ""
	if n := p.shown - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprint(p.w, "\r"+line+pad)
	p.shown = len(line)
	if final {
		fmt.Fprintln(p.w)
		p.shown = 0
	}
}

// bar renders done of total as a fixed-width bar with a percentage.
func bar(done, total int64) string {
	const width = 20
	if total <= 0 {
		total = 1
	}
	n := int(min(done, total) * width / total)
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", n), strings.Repeat(".", width-n), min(done, total)*100/total)
}
