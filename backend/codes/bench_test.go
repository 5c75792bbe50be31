package codes

import (
	"testing"
	"time"
)

// BenchmarkVerifyOfflineDefaultCost measures one offline PIN check at the
// production argon2id cost (two hashes: with and without date of birth).
func BenchmarkVerifyOfflineDefaultCost(b *testing.B) {
	salt := make([]byte, 16)
	now := time.Unix(1_800_000_000, 0)
	entries := []OfflineEntry{
		{CodeID: "a", ExpiresAt: now.Add(time.Hour), NeedsDOB: true, Salt: encodeB64(salt), Params: DefaultArgonParams,
			Verifier: encodeB64(offlineVerifier(DefaultArgonParams, salt, "d1", "123456789", "1990-02-28"))},
		{CodeID: "b", ExpiresAt: now.Add(time.Hour), Salt: encodeB64(salt), Params: DefaultArgonParams,
			Verifier: encodeB64(offlineVerifier(DefaultArgonParams, salt, "d1", "987654321", ""))},
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := VerifyOffline(entries, OfflineAttempt{DeviceID: "d1", PIN: "111111111", BirthDate: "1990-02-28"}, now); err == nil {
			b.Fatal("a wrong PIN matched")
		}
	}
}
