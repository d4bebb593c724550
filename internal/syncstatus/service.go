package syncstatus

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Service is a running master's status: its Tracker, persisted while it
// changes and served on the session's socket, until Close.
type Service struct {
	Tracker *Tracker
	srv     *Server
	// Two goroutines: the persister stops first, so that its last write
	// is done while the socket and its lock still keep a new master out.
	stopRun, stopServe context.CancelFunc
	runDone, serveDone chan error
	closeOnce          sync.Once
	closeErr           error
}

// Start loads the session's figures, takes its socket (ErrRunning when
// another master answers on it) and starts serving and persisting.
func Start(opts Options) (*Service, error) {
	// The socket first: a second master is refused before it reads (or
	// moves aside) anything of the session's.
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	srv, err := Listen(context.Background(), opts.StateDir, nil, log.Named("status"))
	if err != nil {
		return nil, err
	}
	t, err := NewTracker(opts)
	if err != nil {
		srv.close()
		return nil, err
	}
	srv.t = t
	serveCtx, stopServe := context.WithCancel(context.Background())
	s := &Service{Tracker: t, srv: srv, stopServe: stopServe, serveDone: make(chan error, 1), runDone: make(chan error, 1)}
	go func() { s.serveDone <- srv.Serve(serveCtx) }()
	if err := t.Persist(true); err != nil {
		stopServe()
		<-s.serveDone
		return nil, err
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	s.stopRun = stopRun
	go func() { s.runDone <- t.Run(runCtx) }()
	return s, nil
}

// SetControl lets the socket's clients pause, resume and stop the master
// and change its settings through c (nil: no more).
func (s *Service) SetControl(c Control) {
	if c == nil {
		s.srv.ctl.Store(nil)
		return
	}
	s.srv.ctl.Store(&controlBox{c})
}

// SocketPath is where the service listens.
func (s *Service) SocketPath() string { return s.srv.Path() }

// Close persists the figures as they are at the stop, then stops serving
// (the socket is removed). Calling it again is harmless.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.stopRun()
		runErr := <-s.runDone
		s.stopServe()
		s.closeErr = errors.Join(runErr, <-s.serveDone)
	})
	return s.closeErr
}
