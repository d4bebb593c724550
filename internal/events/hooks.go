package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
)

// waitDelay bounds how long a command's output is waited for once it has
// exited or been killed: a grandchild that escaped the process group
// (setsid) and holds the pipes must not hold the hook's worker.
const waitDelay = time.Second

// maxLogLine bounds the hook output quoted in an error.
const maxLogLine = 256

// commandHook runs the configured command for each event.
type commandHook struct {
	argv    []string
	timeout time.Duration
	log     hclog.Logger
}

// deliver runs the command once, the event on its stdin, and returns nil
// if it exited with status 0 within the timeout. On timeout, or when ctx
// ends, the command's whole process group is killed.
func (h *commandHook) deliver(ctx context.Context, it *item) error {
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	cmd := exec.CommandContext(actx, h.argv[0], h.argv[1:]...)
	cmd.Stdin = bytes.NewReader(it.body)
	stdout, stderr := &tailBuffer{max: MaxOutput}, &tailBuffer{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(),
		"GEOREP_EVENT="+string(it.kind),
		"GEOREP_SESSION="+it.session,
		"GEOREP_EVENT_ID="+it.id)
	// Its own process group, so that a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	switch {
	case err == nil:
		if line := lastLine(stdout.Bytes()); line != "" {
			h.log.Debug("event command output", "sink", SinkCommand, "event", it.kind, "id", it.id, "stdout", line)
		}
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("command %s: stopped: %w", h.argv[0], ctx.Err())
	case errors.Is(actx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("command %s: still running after %v, killed with its process group: %w%s",
			h.argv[0], h.timeout, context.DeadlineExceeded, quote("stderr", stderr.Bytes()))
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success():
		// It succeeded; something it left behind holds its output open.
		h.log.Warn("event command exited 0 but left a process holding its output open",
			"sink", SinkCommand, "event", it.kind, "id", it.id)
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("command %s: %w%s", h.argv[0], err, quote("stderr", stderr.Bytes()))
	}
	return fmt.Errorf("command %s: %w", h.argv[0], err)
}

// urlHook POSTs each event to the configured URL.
type urlHook struct {
	url     string
	host    string // for errors: the URL itself may hold a secret
	headers map[string]string
	timeout time.Duration
	client  *http.Client
}

func newURLHook(cfg Config) (*urlHook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil { // Validate accepted it: cannot happen
		return nil, fmt.Errorf("events: url: %w", err)
	}
	var tr *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = dt.Clone()
	} else {
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	return &urlHook{
		url:     cfg.URL,
		host:    u.Host,
		headers: cfg.Headers,
		timeout: cfg.Timeout,
		client: &http.Client{
			Transport: tr,
			// A redirect is a failure (its 3xx status): following it
			// would turn the POST into a GET, or send the headers
			// (Authorization) to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// deliver POSTs the event once and returns nil on a 2xx reply within the
// timeout.
func (h *urlHook) deliver(ctx context.Context, it *item) error {
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.url, bytes.NewReader(it.body))
	if err != nil {
		return fmt.Errorf("POST to %s: %w", h.host, stripURL(err))
	}
	for k, v := range h.headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "georep-events")
	req.Header.Set("X-Georep-Event", string(it.kind))
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("POST to %s: no reply within %v: %w", h.host, h.timeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("POST to %s: %w", h.host, stripURL(err))
	}
	defer resp.Body.Close()
	// The status decides; the body is only quoted, and an error reading
	// it does not matter.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOutput))
	// Read a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 16*MaxOutput))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST to %s: status %s%s", h.host, resp.Status, quote("body", head))
	}
	return nil
}

// stripURL returns the error inside a *url.Error, without the URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// quote returns `; name: "line"` with the last non-empty line of out,
// bounded, or "" when out has none.
func quote(name string, out []byte) string {
	line := lastLine(out)
	if line == "" {
		return ""
	}
	return fmt.Sprintf("; %s: %q", name, line)
}

// lastLine returns the last non-blank line of out, valid UTF-8, at most
// maxLogLine bytes (its end kept).
func lastLine(out []byte) string {
	s := strings.TrimRight(string(out), " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > maxLogLine {
		s = s[len(s)-maxLogLine:]
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
		s = "…" + s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// tailBuffer is an io.Writer that keeps the last max bytes written.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// Bytes returns the bytes kept.
func (b *tailBuffer) Bytes() []byte { return b.buf }
