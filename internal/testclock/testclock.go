// Package testclock is a settable clock for tests of code that takes a
// `func() time.Time`: the server, its API and its console read the time
// only through such a function, so a test moves it instead of sleeping.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that only moves when a test moves it. Its zero value
// stands at the zero time; New starts it elsewhere.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New is a clock standing at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time; pass c.Now where a clock function is taken.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
