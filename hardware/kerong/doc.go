// Package kerong drives Kerong KR-CU16 compatible lock boards: the common
// low-cost 16-lock RS485 board, 19200 baud 8N1.
//
// # Protocol
//
// Every frame is 02 ADDR CMD [DATA] 03 SUM, SUM being the low byte of the sum
// of all bytes before it. ADDR is board<<4 | lock (board 0-15, lock 0-15;
// people count locks from 1, so "board 0 lock 1" is ADDR 0x00).
//
//	unlock  host -> board  02 ADDR 31 03 SUM          board 0 lock 1: 02 00 31 03 36
//	status  host -> board  02 B<<4 30 03 SUM
//	status  board -> host  02 B<<4 35 L1-8 L9-16 IR1-8 IR9-16 03 SUM
//	unlock  board -> host  02 ADDR 31 STATUS 03 SUM   (one-byte lock status)
//
// Bit 0 of L1-8 is lock 1. The L bits are the lock/door feedback switch; the
// driver reads them as door open/closed. Published notes disagree about
// their polarity, so Options.OpenBitClear chooses it (default: a set bit
// means open, as the Kluis simulator reports). IR bits are item sensors
// (set = item present).
//
// Published notes also disagree about the answer to an unlock: some boards
// send the one-byte unlock reply above, others answer with a full status
// frame of the board. The driver accepts either as the board's
// acknowledgement (the answer's address must match; the input buffer is
// flushed before each request so a late answer to an earlier request is not
// taken for it).
//
// # What the driver can and cannot know
//
// The board has no event queue and no command ids (Caps.EventQueue and
// Caps.CommandIDs are false). Watch polls every board each PollInterval and
// derives DoorOpened/DoorClosed, ItemPlaced/ItemRemoved and
// BoardOffline/BoardOnline from state changes; an open-close shorter than a
// poll goes unseen. The board times the unlock pulse itself
// (Caps.TimedPulse), so Pulse's duration is not sent.
//
// Because the board cannot tell a retransmitted unlock from a new one, an
// unlock is sent exactly once. When its answer is lost the driver reads the
// status instead: a lock that reads open counts as unlocked; otherwise Pulse
// returns an error wrapping ErrUncertain, so the layer above can alarm
// rather than pulse again. Status requests are harmless and are repeated up
// to Options.Retries times before a board counts as offline.
//
// Garbage, truncated frames, bad checksums and frames for boards that were
// not asked are skipped (Reader resynchronises on the next 02) and counted
// in kluis_kerong_frames_total. A port that fails with an I/O error (an
// unplugged USB adapter) is closed and reopened by the next request.
package kerong
