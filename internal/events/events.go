// Package events tells the world outside georep what a master session is
// doing: a session went Faulty or came back Active, a checkpoint
// completed, a batch failed its retries, a crawl finished. Each event is
// handed to the operator's hooks: a command run with the event as JSON on
// its standard input, and/or a webhook URL the JSON is POSTed to (the
// events API of GlusterFS geo-replication, issue 21 point 7).
//
// # The JSON contract
//
// Every event is one JSON object, the same bytes for both hooks (followed
// by a newline):
//
//	{
//	  "event": "CHECKPOINT_COMPLETED",
//	  "id": "K3QZ7V2M5XW4RJ6T2N5Y7A4B3C",
//	  "time": "2026-08-17T21:24:33.123456789Z",
//	  "session": "backup",
//	  "master_root": "/srv/data",
//	  "slave": "nas.example.net:7400",
//	  "message": "checkpoint 2026-08-17T21:00:00Z completed",
//	  "details": {"checkpoint": "2026-08-17T21:00:00Z"}
//	}
//
// The fields:
//
//   - event: the kind, one of the Kind constants (FAULTY, ACTIVE,
//     CHECKPOINT_COMPLETED, BATCH_FAILED, CRAWL_FINISHED).
//   - id: unique per event and the same on every attempt to deliver it,
//     so a receiver can drop the duplicate a retry may cause.
//   - time: when the event happened, RFC 3339 with nanoseconds, in UTC.
//   - session, master_root, slave: which session: its name, the master
//     directory it replicates and the slave's address.
//   - message: one line of text for a human.
//   - details: an object, always present (possibly empty), with what is
//     particular to the kind (the checkpoint, the error, crawl counts...);
//     its keys are documented with each Kind.
//
// The contract is stable: fields are never renamed, removed or given
// another type. New fields, new detail keys and new kinds may be added,
// so a consumer must ignore what it does not know.
//
// The command is run directly (argv, no shell) with the variables
// GEOREP_EVENT (the kind), GEOREP_SESSION (the session name) and
// GEOREP_EVENT_ID added to georep's environment. The webhook gets a POST
// with Content-Type application/json and an X-Georep-Event header holding
// the kind; any 2xx status is success, redirects are not followed.
//
// # Guarantees
//
//   - Emit never blocks replication: it encodes the event and puts it on
//     each hook's bounded queue without waiting; when a queue is full the
//     event is dropped for that hook, logged and counted.
//   - Each hook has its own queue and worker, so a slow or dead hook
//     never delays the other one, and it receives events in the order they
//     were emitted.
//   - Each event is tried up to 1+Retries times per hook, each attempt
//     bounded by Timeout (a command that outlives it is killed with its
//     whole process group), with a doubling back-off between attempts.
//     Then it is given up, logged and counted as failed. Once an attempt
//     succeeds the event is not sent again; but an attempt that timed out
//     may still have reached the receiver, hence the id.
//   - Nothing is persisted: events queued when the dispatcher stops, or
//     while georep is down, are dropped (and counted), never replayed.
//   - Memory is bounded: the queues, and the hook output kept for the log
//     (the last 4 KiB of a command's stdout and stderr, the first 4 KiB of
//     a webhook's reply).
package events

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Kind is the kind of an event, the "event" field of its JSON.
type Kind string

// The event kinds. The detail keys listed are those the master fills in
// when it has them.
const (
	// KindFaulty: the session went Faulty: it stopped replicating and is
	// retrying. Details: "error" (what went wrong, text).
	KindFaulty Kind = "FAULTY"
	// KindActive: the session is replicating again after being Faulty
	// (or for the first time). Details: none required.
	KindActive Kind = "ACTIVE"
	// KindCheckpointCompleted: every change made on the master before the
	// checkpoint is on the slave. Details: "checkpoint" (the checkpoint
	// time, RFC 3339), "completed" (when it completed, RFC 3339).
	KindCheckpointCompleted Kind = "CHECKPOINT_COMPLETED"
	// KindBatchFailed: a batch of changes failed all its retries.
	// Details: "error" (text), "entries" (how many changes the batch held),
	// "attempts".
	KindBatchFailed Kind = "BATCH_FAILED"
	// KindCrawlFinished: a crawl of the master tree finished. Details:
	// "crawl" (its kind, e.g. "initial" or "hybrid"), "files", "dirs",
	// "bytes", "duration_seconds".
	KindCrawlFinished Kind = "CRAWL_FINISHED"
)

// Event is one event, as delivered to the hooks. See the package
// documentation for the JSON contract.
type Event struct {
	// Kind is the kind of the event (JSON "event").
	Kind Kind `json:"event"`
	// ID identifies the event (JSON "id"); Emit fills it in when empty.
	ID string `json:"id"`
	// Time is when the event happened (JSON "time", RFC 3339 with
	// nanoseconds, always in UTC); Emit sets it to the current time when
	// zero.
	Time time.Time `json:"time"`
	// Session is the name of the session (JSON "session").
	Session string `json:"session"`
	// MasterRoot is the master directory the session replicates (JSON
	// "master_root").
	MasterRoot string `json:"master_root"`
	// Slave is the address of the session's slave (JSON "slave").
	Slave string `json:"slave"`
	// Message is one line for a human (JSON "message").
	Message string `json:"message"`
	// Details holds what is particular to the kind (JSON "details", an
	// object, {} when empty). Values must be encodable as JSON; a value
	// that is an error is encoded as its text. Emit encodes the event
	// before it returns, so the caller may reuse the map afterwards.
	Details map[string]any `json:"details"`
}

// wireEvent is Event as it is encoded: the field order of the contract,
// the time as a UTC string, details never null.
type wireEvent struct {
	Kind       Kind           `json:"event"`
	ID         string         `json:"id"`
	Time       string         `json:"time"`
	Session    string         `json:"session"`
	MasterRoot string         `json:"master_root"`
	Slave      string         `json:"slave"`
	Message    string         `json:"message"`
	Details    map[string]any `json:"details"`
}

// MarshalJSON encodes the event by the contract: time in UTC with
// nanoseconds, details an object even when nil, error values as text.
// (Decoding needs no method: encoding/json reads the result back into an
// Event.)
func (e Event) MarshalJSON() ([]byte, error) {
	details := make(map[string]any, len(e.Details))
	for k, v := range e.Details {
		if err, ok := v.(error); ok && err != nil {
			v = err.Error()
		}
		details[k] = v
	}
	return json.Marshal(wireEvent{
		Kind:       e.Kind,
		ID:         e.ID,
		Time:       e.Time.UTC().Format(time.RFC3339Nano),
		Session:    e.Session,
		MasterRoot: e.MasterRoot,
		Slave:      e.Slave,
		Message:    e.Message,
		Details:    details,
	})
}

// encode completes ev (id, time) and returns its JSON followed by a
// newline. Details that cannot be encoded are replaced by
// {"details_error": reason}, so the event itself is never lost.
func encode(ev Event, now time.Time) (Event, []byte) {
	if ev.ID == "" {
		ev.ID = rand.Text()
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = ev.Time.UTC()
	b, err := marshal(ev)
	if err != nil {
		var me *json.MarshalerError
		if errors.As(err, &me) && me.Err != nil {
			err = me.Err
		}
		ev.Details = map[string]any{"details_error": "details not encodable as JSON: " + err.Error()}
		b, err = json.Marshal(ev)
		if err != nil { // cannot happen: every field is now a string
			b = []byte(`{}`)
		}
	}
	return ev, append(b, '\n')
}

// marshal is json.Marshal, with a panic in a detail's own MarshalJSON
// returned as an error: a bad detail must not bring replication down.
func marshal(ev Event) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return json.Marshal(ev)
}
