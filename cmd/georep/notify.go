package main

import (
	"context"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/georep/georep/internal/sdnotify"
)

// notifySystemd tells systemd, when the command runs as a Type=notify
// unit (dist/systemd), that it is ready (READY=1 and status as STATUS=),
// pings the watchdog every WatchdogSec/2 when the unit sets one, and
// says STOPPING=1 as soon as ctx ends (SIGTERM) or stop is called,
// whichever comes first. stop waits for its goroutine. Outside systemd
// (no NOTIFY_SOCKET) it does nothing. Failures to notify are logged, never
// fatal: replication does not depend on systemd hearing of it.
func notifySystemd(ctx context.Context, lo logOptions, stderr io.Writer, name, status string) (stop func()) {
	log, err := lo.logger(name, stderr)
	if err != nil {
		log = hclog.NewNullLogger()
	}
	return notifyWith(ctx, os.LookupEnv, os.Getpid(), log, status)
}

// notifyWith is notifySystemd with the environment and pid given (tests).
func notifyWith(ctx context.Context, lookup sdnotify.LookupFunc, pid int, log hclog.Logger, status string) (stop func()) {
	n, err := sdnotify.New(lookup)
	if err != nil {
		log.Warn("systemd notification off", "error", err)
		return func() {}
	}
	if !n.Enabled() {
		return func() {}
	}
	interval, err := sdnotify.WatchdogInterval(lookup, pid)
	if err != nil {
		log.Warn("systemd watchdog off", "error", err)
		interval = 0
	}
	if err := n.Notify(sdnotify.Ready, sdnotify.Status(status)); err != nil {
		log.Warn("systemd notification", "error", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if interval > 0 {
			log.Debug("systemd watchdog on", "interval", interval)
			n.Watchdog(ctx, interval, func(err error) { log.Warn("systemd watchdog ping", "error", err) })
		} else {
			<-ctx.Done()
		}
		if err := n.Notify(sdnotify.Stopping, sdnotify.Status("stopping")); err != nil {
			log.Warn("systemd notification", "error", err)
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}
