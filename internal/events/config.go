package events

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults and bounds of Config.
const (
	// DefaultQueueSize is the events a hook's queue holds when
	// Config.QueueSize is 0.
	DefaultQueueSize = 256
	// DefaultTimeout bounds one attempt when Config.Timeout is 0.
	DefaultTimeout = 10 * time.Second
	// DefaultRetries is the retries after a failed first attempt when
	// Config.Retries is 0.
	DefaultRetries = 5
	// DefaultBackoff is the first wait between attempts when
	// Config.Backoff is 0.
	DefaultBackoff = time.Second
	// MaxBackoff caps the doubling wait between attempts.
	MaxBackoff = time.Minute
	// MaxQueueSize and MaxRetries bound Config.QueueSize and
	// Config.Retries: more is a typo, not a setting.
	MaxQueueSize = 1 << 20
	MaxRetries   = 100
	// MaxOutput is how much of a command's stdout and stderr (the last
	// bytes of each), and of a webhook's reply (the first bytes), is
	// kept for the log.
	MaxOutput = 4 << 10
)

// Config says where events go and how hard to try. The zero value is
// valid and has no hook: Emit then only counts. Zero fields take their
// defaults.
type Config struct {
	// Command, when not empty, is run for each event: Command[0] is the
	// program (looked up in PATH when it has no slash), the rest its
	// arguments; no shell is involved. The event's JSON is its standard
	// input; exit status 0 is success.
	Command []string
	// URL, when not empty, is an http or https URL each event is POSTed
	// to; a 2xx status is success.
	URL string
	// QueueSize is the events waiting for each hook before new ones are
	// dropped (default DefaultQueueSize).
	QueueSize int
	// Timeout bounds each attempt (default DefaultTimeout). A command
	// still running then is killed with its process group; its output is
	// waited for one second more at most.
	Timeout time.Duration
	// Retries is the attempts after the first failed one before the
	// event is given up (default DefaultRetries; there is no way to ask
	// for none).
	Retries int
	// Backoff is the wait after the first failed attempt; it doubles
	// after each, up to MaxBackoff (default DefaultBackoff).
	Backoff time.Duration
	// Headers are added to each webhook request, e.g. Authorization.
	// Content-Type (always application/json), Content-Length and
	// Transfer-Encoding cannot be set; Host sets the request's host.
	Headers map[string]string
}

// Enabled reports whether c has a hook.
func (c Config) Enabled() bool {
	return len(c.Command) > 0 || c.URL != ""
}

// Validate returns an error, one line naming the setting, if c cannot be
// used. It does not look for the command: a missing program is a failed
// delivery, logged and counted.
func (c Config) Validate() error {
	if len(c.Command) > 0 {
		if strings.TrimSpace(c.Command[0]) == "" {
			return errors.New("events: command: the program (first word) is empty")
		}
		for i, arg := range c.Command {
			if strings.IndexByte(arg, 0) >= 0 {
				return fmt.Errorf("events: command: word %d contains a NUL byte", i)
			}
		}
	}
	if c.URL != "" {
		if err := validateURL(c.URL); err != nil {
			return err
		}
	}
	if len(c.Headers) > 0 && c.URL == "" {
		return errors.New("events: headers are set but there is no URL to send them to")
	}
	for name, value := range c.Headers {
		if err := validateHeader(name, value); err != nil {
			return err
		}
	}
	switch {
	case c.QueueSize < 0:
		return fmt.Errorf("events: queue size %d: must not be negative", c.QueueSize)
	case c.QueueSize > MaxQueueSize:
		return fmt.Errorf("events: queue size %d: must be at most %d", c.QueueSize, MaxQueueSize)
	case c.Timeout < 0:
		return fmt.Errorf("events: timeout %v: must not be negative", c.Timeout)
	case c.Retries < 0:
		return fmt.Errorf("events: retries %d: must not be negative", c.Retries)
	case c.Retries > MaxRetries:
		return fmt.Errorf("events: retries %d: must be at most %d", c.Retries, MaxRetries)
	case c.Backoff < 0:
		return fmt.Errorf("events: backoff %v: must not be negative", c.Backoff)
	}
	return nil
}

// validateURL accepts an absolute http or https URL with a host. Its
// errors never repeat the URL, which may hold a password.
func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return fmt.Errorf("events: url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return errors.New("events: url: no scheme: it must start with http:// or https://")
		}
		return fmt.Errorf("events: url: scheme %q: must be http or https", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return errors.New("events: url: no host: it must look like http://host[:port]/path")
	}
	return nil
}

// validateHeader accepts a header name that is an HTTP token and a value
// without control characters but tab.
func validateHeader(name, value string) error {
	if name == "" {
		return errors.New("events: header: empty name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("events: header %q: invalid character %q in the name", name, name[i])
		}
	}
	switch http.CanonicalHeaderKey(name) {
	case "Content-Type", "Content-Length", "Transfer-Encoding":
		return fmt.Errorf("events: header %q: set by georep, cannot be configured", name)
	}
	for i := 0; i < len(value); i++ {
		if b := value[i]; (b < ' ' && b != '\t') || b == 0x7f {
			// The value is not quoted: it may be a secret.
			return fmt.Errorf("events: header %q: the value contains a control character", name)
		}
	}
	return nil
}

// isTokenChar reports whether b may appear in an HTTP token (RFC 9110
// section 5.6.2).
func isTokenChar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	return c
}
