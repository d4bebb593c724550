package master

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
)

// TestCrawlDirRemovedWhileListed: a directory removed after it was opened
// and before it was listed (getdents of a deleted directory fails with
// ENOENT) is gone, not a fault: the 30-minute soak restarted a worker for
// it ("readdirent dir: no such file or directory").
func TestCrawlDirRemovedWhileListed(t *testing.T) {
	d := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(d); err != nil {
		t.Fatal(err)
	}
	if _, err := listDir(fd); err == nil {
		t.Skip("this kernel lists a deleted directory without an error")
	}
	x := &xsync{log: hclog.NewNullLogger()}
	if err := x.crawlDir(fd, gfid.Root, false, "d"); err != nil {
		t.Fatalf("crawl of a directory removed while listed: %v", err)
	}
}
