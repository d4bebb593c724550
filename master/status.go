package master

import (
	"encoding/hex"

	"github.com/georep/georep/internal/syncstatus"
)

// identity is the session's identity as the status tracker keeps it for
// checkpoints: the session id and both roots' volume ids.
func (m *Master) identity() syncstatus.Identity {
	return syncstatus.Identity{Session: m.sess.SessionID, MasterVolume: hex.EncodeToString(m.volumeID), SlaveVolume: m.sess.SlaveVolumeID}
}
