package recorder

import (
	"encoding/binary"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/internal/gfid"
)

// fanRecord builds one info record: fsid, handle, and a name if given.
func fanRecord(typ byte, handle []byte, name string) []byte {
	body := make([]byte, 16, 16+len(handle)+len(name)+1)
	binary.NativeEndian.PutUint32(body[0:], 7)
	binary.NativeEndian.PutUint32(body[4:], 9)
	binary.NativeEndian.PutUint32(body[8:], uint32(len(handle)))
	binary.NativeEndian.PutUint32(body[12:], 1)
	body = append(body, handle...)
	if name != "" {
		body = append(body, name...)
		body = append(body, 0)
	}
	for (4+len(body))%4 != 0 {
		body = append(body, 0)
	}
	hdr := []byte{typ, 0, 0, 0}
	binary.NativeEndian.PutUint16(hdr[2:], uint16(4+len(body)))
	return append(hdr, body...)
}

func fanEventBytes(mask uint64, recs ...[]byte) []byte {
	var info []byte
	for _, r := range recs {
		info = append(info, r...)
	}
	m := make([]byte, 24)
	binary.NativeEndian.PutUint32(m[0:], uint32(24+len(info)))
	m[4] = unix.FANOTIFY_METADATA_VERSION
	binary.NativeEndian.PutUint16(m[6:], 24)
	binary.NativeEndian.PutUint64(m[8:], mask)
	binary.NativeEndian.PutUint32(m[16:], uint32(0xffffffff)) // FAN_NOFD
	return append(m, info...)
}

func TestParseFanEvents(t *testing.T) {
	dirH, objH, newH := []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{9, 9, 9, 9}, []byte{4, 4, 4, 4, 4, 4, 4, 4}
	buf := fanEventBytes(unix.FAN_CREATE|unix.FAN_DELETE,
		fanRecord(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, dirH, "a name\nwith \xff"),
		fanRecord(unix.FAN_EVENT_INFO_TYPE_FID, objH, ""))
	buf = append(buf, fanEventBytes(unix.FAN_RENAME|unix.FAN_ONDIR,
		fanRecord(unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, dirH, "old"),
		fanRecord(unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, newH, "new"),
		fanRecord(unix.FAN_EVENT_INFO_TYPE_FID, objH, ""))...)
	buf = append(buf, fanEventBytes(unix.FAN_MODIFY|unix.FAN_ATTRIB|unix.FAN_CLOSE_WRITE,
		fanRecord(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, dirH, "f"))...)
	buf = append(buf, fanEventBytes(unix.FAN_ATTRIB|unix.FAN_ONDIR,
		fanRecord(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, newH, "."),
		fanRecord(unix.FAN_EVENT_INFO_TYPE_FID, newH, ""))...)
	var got []fanEvent
	if err := parseFanEvents(buf, func(fe *fanEvent) { got = append(got, *fe) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d events, want 4", len(got))
	}
	if string(got[0].dir.name) != "a name\nwith \xff" || got[0].fd != -1 || !got[0].obj.ok {
		t.Errorf("first event: %+v", got[0])
	}
	if string(got[1].old.name) != "old" || string(got[1].new.name) != "new" {
		t.Errorf("rename: %+v", got[1])
	}

	// Translated with the directories registered: split, renames paired.
	f := &fanotify{dirs: newDirMap[string]()}
	d1, d2 := gfid.GFID{1}, gfid.GFID{2}
	f.dirs.byKey[string(got[0].dir.key)] = d1
	f.dirs.byKey[string(got[1].new.key)] = d2
	var evs []event
	for i := range got {
		evs = f.translate(&got[i], evs)
	}
	want := []event{
		{mask: unix.IN_CREATE | unix.IN_DELETE, dir: d1, name: "a name\nwith \xff", known: true},
		{mask: unix.IN_MOVED_FROM | unix.IN_ISDIR, cookie: 1, dir: d1, name: "old", known: true},
		{mask: unix.IN_MOVED_TO | unix.IN_ISDIR, cookie: 1, dir: d2, name: "new", known: true},
		{mask: unix.IN_MODIFY | unix.IN_CLOSE_WRITE, dir: d1, name: "f", known: true},
		{mask: unix.IN_ATTRIB, dir: d1, name: "f", known: true},
		{mask: unix.IN_ATTRIB | unix.IN_ISDIR, dir: d2, known: true, self: true},
	}
	if len(evs) != len(want) {
		t.Fatalf("translated into %d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i := range want {
		got := evs[i]
		got.obj = nil // compared below
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("event %d: %+v, want %+v", i, evs[i], want[i])
		}
	}

	// Damage is an error, never a panic.
	for _, bad := range [][]byte{buf[:10], buf[:30], append(fanEventBytes(unix.FAN_CREATE), 1, 2)} {
		if err := parseFanEvents(bad, func(*fanEvent) {}); err == nil {
			t.Errorf("%d malformed bytes parsed without an error", len(bad))
		}
	}
}

func FuzzFanEvents(f *testing.F) {
	f.Add(fanEventBytes(unix.FAN_CREATE, fanRecord(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, []byte{1, 2, 3, 4}, "x")))
	f.Add(fanEventBytes(unix.FAN_RENAME,
		fanRecord(unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, []byte{1}, "o"),
		fanRecord(unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, []byte{2}, "n")))
	f.Fuzz(func(t *testing.T, b []byte) {
		fa := &fanotify{dirs: newDirMap[string]()}
		parseFanEvents(b, func(fe *fanEvent) {
			fa.dirs.byKey[string(fe.dir.key)] = gfid.Root
			fa.translate(fe, nil)
		})
	})
}
