// Package syncstatus is what a georep master says about its session: the
// state model (status, crawl status, pending work, totals, crawl progress,
// checkpoint), the Tracker the master reports to, the files that keep those
// figures across restarts (written atomically in the state directory), and
// the unix socket through which `georep status` and `georep checkpoint`
// talk to a running master.
//
// Words (GlusterFS geo-replication's): the stime is the time up to which
// the slave holds every change of the master; LAST_SYNCED shows it. A
// checkpoint is a time T the operator asks about: it is completed when the
// stime reaches T. ENTRY, DATA and META count the current batch's entry,
// data and metadata ops not yet applied; FILES, BYTES and DELETES PENDING
// are a hybrid crawl's files and bytes not yet synced and its removals not
// yet made (zero during a changelog crawl, whose pending work is ENTRY,
// DATA and META).
package syncstatus

import (
	"time"
)

// State is a session's status.
type State string

// The states a session can be in.
const (
	// Initializing: the master started and has not opened a session with
	// the slave yet.
	Initializing State = "Initializing"
	// Active: the session is open and syncing.
	Active State = "Active"
	// Faulty: the last attempt at a batch failed (Snapshot.Fault says
	// why); the master retries it, and the next success clears it.
	Faulty State = "Faulty"
	// Paused: `georep pause` stopped the shipping (the recorder still
	// journals); `georep resume` continues from the marks.
	Paused State = "Paused"
	// Stopped: no master runs for the session; the figures are the last
	// it persisted.
	Stopped State = "Stopped"
)

// Crawl is how the master finds changes.
type Crawl string

// The crawls.
const (
	// NoCrawl: no crawl started yet.
	NoCrawl Crawl = ""
	// HybridCrawl is the xsync crawl: the whole tree walked (the initial
	// sync, a one-shot run, and after a gap in the changelog).
	HybridCrawl Crawl = "Hybrid Crawl"
	// HistoryCrawl replays the changelog journal from the stime after a
	// restart. Not built yet (issue 5): nothing sets it.
	HistoryCrawl Crawl = "History Crawl"
	// ChangelogCrawl applies the live journal's segments as they come.
	ChangelogCrawl Crawl = "Changelog Crawl"
)

// Pending counts work not yet done.
type Pending struct {
	// The current batch's ops not yet applied on the slave.
	Entry int64 `json:"entry"`
	Data  int64 `json:"data"`
	Meta  int64 `json:"meta"`
	// A hybrid crawl's files and bytes not yet synced, and removals not
	// yet made.
	Files   int64 `json:"files"`
	Bytes   int64 `json:"bytes"`
	Deletes int64 `json:"deletes"`
}

// Totals are the session's figures since it began (they survive
// restarts).
type Totals struct {
	// FilesSynced counts files whose data was sent (a file found current
	// on the slave is not counted).
	FilesSynced int64 `json:"files_synced"`
	// BytesSynced counts file data sent on the wire (after compression,
	// without what deltas let the slave rebuild from its own copy).
	BytesSynced int64 `json:"bytes_synced"`
	// Deletes counts removals applied on the slave (UNLINK, RMDIR, and
	// purges that removed something).
	Deletes int64 `json:"deletes"`
	// Failures counts ops the slave could not apply, batch attempts that
	// failed as a whole (the link failed), and worker faults not already
	// counted so (the slave unreachable), over every attempt: a batch
	// retried three times with one failing op counts three. A shutdown
	// (cancellation) is none.
	Failures int64 `json:"failures"`
	// Scrubs counts finished scrubs, ScrubDifferences what they found
	// (where nothing was in flight).
	Scrubs           int64 `json:"scrubs,omitempty"`
	ScrubDifferences int64 `json:"scrub_differences,omitempty"`
}

// Add returns t plus o.
func (t Totals) Add(o Totals) Totals {
	return Totals{
		FilesSynced:      t.FilesSynced + o.FilesSynced,
		BytesSynced:      t.BytesSynced + o.BytesSynced,
		Deletes:          t.Deletes + o.Deletes,
		Failures:         t.Failures + o.Failures,
		Scrubs:           t.Scrubs + o.Scrubs,
		ScrubDifferences: t.ScrubDifferences + o.ScrubDifferences,
	}
}

// Progress is the last hybrid crawl's progress. The totals grow while the
// crawl walks the tree (Listing) and are final once it has walked all of
// it: the crawl writes its whole journal before its data goes, so its own
// count is the total, with no separate pre-count.
type Progress struct {
	Started    time.Time `json:"started"`
	Listing    bool      `json:"listing"` // the walk is not finished: totals still grow
	FilesTotal int64     `json:"files_total"`
	BytesTotal int64     `json:"bytes_total"`
	// Done: files synced, found current, or gone before they could be
	// read, and the sizes of those synced or found current.
	FilesDone int64 `json:"files_done"`
	BytesDone int64 `json:"bytes_done"`
	// DataStarted is when the walk ended and the data began to go (the
	// rate, and so the ETA, is measured from there: the walk moves no
	// data).
	DataStarted time.Time `json:"data_started"`
	Finished    bool      `json:"finished"`
}

// ETA estimates the time left from the rate of bytes done so far (files
// when there are no bytes to count); ok is false while there is no basis
// for an estimate (the walk still lists, or nothing is done yet).
func (p Progress) ETA(now time.Time) (left time.Duration, ok bool) {
	if p.Finished {
		return 0, true
	}
	if p.Listing || p.DataStarted.IsZero() {
		return 0, false
	}
	elapsed := now.Sub(p.DataStarted)
	if elapsed <= 0 {
		return 0, false
	}
	done, total := p.BytesDone, p.BytesTotal
	if total <= 0 || done <= 0 {
		done, total = p.FilesDone, p.FilesTotal
	}
	if done <= 0 {
		return 0, false
	}
	if done >= total {
		return 0, true
	}
	rate := float64(done) / elapsed.Seconds()
	return time.Duration(float64(total-done) / rate * float64(time.Second)), true
}

// Identity says which session and which trees a checkpoint was set
// against: the session id (state dir), the master root's volume id and
// the slave root's (hex). Marks that were reset (a new volume id on
// either root, a new session) make an older checkpoint meaningless.
type Identity struct {
	Session      string `json:"session"`
	MasterVolume string `json:"master_volume"`
	SlaveVolume  string `json:"slave_volume,omitempty"` // empty until the slave was first reached
}

// Same reports whether a checkpoint set against c still applies to the
// session now at i. A slave volume unknown on either side is not a change.
func (c Identity) Same(i Identity) bool {
	if c.Session != i.Session || c.MasterVolume != i.MasterVolume {
		return false
	}
	return c.SlaveVolume == "" || i.SlaveVolume == "" || c.SlaveVolume == i.SlaveVolume
}

// Snapshot is the session's status at one moment: the socket's reply,
// `georep status --json`'s output, and (State aside) the persisted file.
type Snapshot struct {
	Version int `json:"version"`
	// Name is the session's name in its master's config file ("" or
	// "default" without one).
	Name string `json:"name,omitempty"`
	// Master is host:root, Slave the slave's address.
	Master   string   `json:"master"`
	Slave    string   `json:"slave"`
	StateDir string   `json:"state_dir"`
	Identity Identity `json:"identity"`
	State    State    `json:"status"`
	// Fault is why the session is Faulty (the last failure's reason while
	// Stopped, if it stopped Faulty).
	Fault string `json:"fault,omitempty"`
	Crawl Crawl  `json:"crawl_status"`
	// CrawlReason is why the last hybrid crawl ran (the first sync, a
	// gap in the journal and its cause, a restart).
	CrawlReason string `json:"crawl_reason,omitempty"`
	// Batch is what the batch now running is doing, and since when: a
	// batch that takes long says what it waits for (nil between batches).
	Batch *BatchPhase `json:"batch,omitempty"`
	// LastSynced is the stime (zero: the slave has nothing yet).
	LastSynced time.Time `json:"last_synced"`
	Pending    Pending   `json:"pending"`
	Totals     Totals    `json:"totals"`
	// Progress is the last hybrid crawl's, nil when there was none.
	Progress *Progress `json:"progress,omitempty"`
	// Started is when the running master started (zero when Stopped).
	Started    time.Time   `json:"started"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Updated is when these figures were taken.
	Updated time.Time `json:"updated"`
	// Bandwidth is the cap on file data in force (nil: none configured,
	// or not running).
	Bandwidth *Bandwidth `json:"bandwidth,omitempty"`
	// Events counts the event hooks' deliveries (nil: no hooks).
	Events *EventCounts `json:"events,omitempty"`
	// Scrub is the last scrub's outcome, or the one running (nil: no
	// scrub configured).
	Scrub *ScrubStatus `json:"scrub,omitempty"`
}

// ScrubStatus is what the scrub did last (or does now).
type ScrubStatus struct {
	Running  bool      `json:"running,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Next     time.Time `json:"next,omitzero"`
	// Files and Bytes hashed on the master; WireBytes the slave's answers.
	Files     int64 `json:"files"`
	Bytes     int64 `json:"bytes"`
	WireBytes int64 `json:"wire_bytes"`
	// Differences found where nothing was in flight (Examples: some of
	// them, "KIND PATH"); InFlight: differences left for replication.
	Differences int      `json:"differences"`
	InFlight    int      `json:"in_flight"`
	Examples    []string `json:"examples,omitempty"`
	// Repairing: a crawl comparing those files by content was asked for.
	Repairing  bool   `json:"repairing,omitempty"`
	Quick      bool   `json:"quick,omitempty"`
	ReportOnly bool   `json:"report_only,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Bandwidth is the cap on file data now, and when it next changes.
type Bandwidth struct {
	// Limit is in bytes per second; 0 is no cap.
	Limit int64 `json:"limit"`
	// Next is when the schedule next changes the limit (zero: never).
	Next time.Time `json:"next,omitzero"`
	// Schedule is the schedule, as written.
	Schedule string `json:"schedule"`
}

// EventCounts are the event hooks' figures since the start.
type EventCounts struct {
	Emitted   uint64 `json:"emitted"`
	Delivered uint64 `json:"delivered"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
}

// BatchPhase is what the running batch does now.
type BatchPhase struct {
	// Phase says what it waits for: "entry ops", "data", "metadata",
	// "reconciling N directories", ...
	Phase string    `json:"phase"`
	Since time.Time `json:"since"`
	// Started is when the batch began.
	Started time.Time `json:"started"`
}

// snapshotVersion is Snapshot.Version: a reader refuses figures of
// another version rather than misread them.
const snapshotVersion = 1

// Uptime is how long the master has run (0 when Stopped).
func (s *Snapshot) Uptime() time.Duration {
	if s.State == Stopped || s.Started.IsZero() {
		return 0
	}
	return s.Updated.Sub(s.Started)
}
