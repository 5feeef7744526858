package certs

import (
	"context"
	"crypto/rand"
	"time"
)

// rotateTicketKey puts a new random session ticket key in front and keeps
// the previous one for decryption only: a ticket resumes until two
// rotations have passed since it was issued.
func (m *Manager) rotateTicketKey() {
	var k [32]byte
	_, _ = rand.Read(k[:]) // never fails (crypto/rand since Go 1.24)
	m.ticketMu.Lock()
	defer m.ticketMu.Unlock()
	keys := [][32]byte{k}
	if len(m.ticketKeys) > 0 {
		keys = append(keys, m.ticketKeys[0])
	}
	m.ticketKeys = keys
	m.conf.SetSessionTicketKeys(keys)
	m.keysMade.Add(1)
}

// rotateTicketKeys rotates the session ticket keys every interval until ctx
// is done.
func (m *Manager) rotateTicketKeys(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.rotateTicketKey()
		}
	}
}
