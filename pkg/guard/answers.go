package guard

import (
	"sync"
	"time"
)

// answerSet holds the exchanges the guard is forwarding (from the request
// sent upstream to the end of its answer), each with the function that
// aborts its upstream I/O. When the drain_timeout of a shutdown runs out,
// cut aborts them all: each handler then ends its exchange itself — 503
// server_shutting_down while no answer had come, a stream with
// shutdownCutEvent, a plain body by aborting the connection — and returns,
// before net/http closes the connections.
type answerSet struct {
	mu      sync.Mutex
	m       map[*exchange]func()
	cutting bool
	ended   chan struct{} // closed when cutting and none is left
}

// cutGrace bounds how long a cut waits for the handlers to end their
// answers before the connections are closed anyway.
const cutGrace = 2 * time.Second

// add registers x's answer; during a cut it is aborted at once.
func (s *answerSet) add(x *exchange, abort func()) {
	s.mu.Lock()
	if s.cutting {
		s.mu.Unlock()
		x.cut.Store(true)
		abort()
		return
	}
	if s.m == nil {
		s.m = make(map[*exchange]func())
	}
	s.m[x] = abort
	s.mu.Unlock()
}

// remove forgets x's answer (it has ended).
func (s *answerSet) remove(x *exchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, x)
	if s.cutting && len(s.m) == 0 && s.ended != nil {
		close(s.ended)
		s.ended = nil
	}
}

// cut aborts every open answer and returns how many there were, and a
// channel closed once all have ended.
func (s *answerSet) cut() (int, <-chan struct{}) {
	s.mu.Lock()
	s.cutting = true
	n := len(s.m)
	ended := make(chan struct{})
	if n == 0 {
		close(ended)
	} else {
		s.ended = ended
	}
	aborts := make([]func(), 0, n)
	for x, abort := range s.m {
		x.cut.Store(true)
		aborts = append(aborts, abort)
	}
	s.mu.Unlock()
	for _, abort := range aborts {
		abort()
	}
	return n, ended
}
