package events

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string // "" for valid; else a substring of the error
	}{
		{"zero: no hook", Config{}, ""},
		{"command", Config{Command: []string{"/usr/local/bin/hook", "--flag"}}, ""},
		{"command in PATH", Config{Command: []string{"notify-send"}}, ""},
		{"http url", Config{URL: "http://127.0.0.1:8080/hook"}, ""},
		{"https url with credentials", Config{URL: "https://u:p@hooks.example.net/x?y=1"}, ""},
		{"both, all set", Config{Command: []string{"h"}, URL: "https://h", QueueSize: 10, Timeout: time.Second,
			Retries: 3, Backoff: time.Millisecond, Headers: map[string]string{"Authorization": "Bearer x", "Host": "v"}}, ""},
		{"upper bounds", Config{QueueSize: MaxQueueSize, Retries: MaxRetries}, ""},

		{"empty program", Config{Command: []string{""}}, "command: the program (first word) is empty"},
		{"blank program", Config{Command: []string{"  ", "x"}}, "program (first word) is empty"},
		{"NUL in argument", Config{Command: []string{"h", "a\x00b"}}, "word 1 contains a NUL byte"},
		{"url without scheme", Config{URL: "hooks.example.net/x"}, "no scheme"},
		{"url ftp", Config{URL: "ftp://hooks.example.net/x"}, `scheme "ftp": must be http or https`},
		{"url file", Config{URL: "file:///tmp/x"}, `scheme "file"`},
		{"url without host", Config{URL: "http:///path"}, "no host"},
		{"url port only", Config{URL: "http://:8080/x"}, "no host"},
		{"url opaque", Config{URL: "http:hooks.example.net"}, "no host"},
		{"url unparsable", Config{URL: "http://u:secret@[::1/x"}, "events: url:"},
		{"headers without url", Config{Command: []string{"h"}, Headers: map[string]string{"A": "b"}}, "no URL"},
		{"header bad name", Config{URL: "http://h", Headers: map[string]string{"Bad Name": "x"}}, `header "Bad Name": invalid character ' '`},
		{"header empty name", Config{URL: "http://h", Headers: map[string]string{"": "x"}}, "empty name"},
		{"header newline", Config{URL: "http://h", Headers: map[string]string{"Authorization": "a\r\nX-Evil: 1"}}, "control character"},
		{"header content-type", Config{URL: "http://h", Headers: map[string]string{"content-type": "text/plain"}}, "set by georep"},
		{"negative queue", Config{QueueSize: -1}, "queue size -1: must not be negative"},
		{"huge queue", Config{QueueSize: MaxQueueSize + 1}, "must be at most"},
		{"negative timeout", Config{Timeout: -time.Second}, "timeout -1s: must not be negative"},
		{"negative retries", Config{Retries: -1}, "retries -1: must not be negative"},
		{"huge retries", Config{Retries: MaxRetries + 1}, "retries 101: must be at most 100"},
		{"negative backoff", Config{Backoff: -time.Millisecond}, "backoff -1ms: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.err)
			case err != nil && !strings.Contains(err.Error(), tc.err):
				t.Fatalf("error %q, want it to contain %q", err, tc.err)
			}
			if err != nil {
				if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "X-Evil") {
					t.Errorf("error %q repeats a secret", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q is not one line", err)
				}
				if d, nerr := New(tc.cfg, nil); d != nil || nerr == nil {
					t.Errorf("New accepted what Validate refused")
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.QueueSize != DefaultQueueSize || c.Timeout != DefaultTimeout || c.Retries != DefaultRetries || c.Backoff != DefaultBackoff {
		t.Errorf("defaults %+v", c)
	}
	set := Config{QueueSize: 1, Timeout: 2, Retries: 3, Backoff: 4}
	if got := set.withDefaults(); got.QueueSize != 1 || got.Timeout != 2 || got.Retries != 3 || got.Backoff != 4 {
		t.Errorf("set values changed: %+v", got)
	}
}
