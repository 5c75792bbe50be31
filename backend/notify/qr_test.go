package notify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
)

// TestQRPNGDecodesEveryToken renders real tokens the way the e-mails and
// slips do and decodes each with a standard decoder (gozxing), then
// verifies the decoded token. With a fixed 256 px image, modules had uneven
// widths and tokens 184 and 255 of this key were misread; 133 defeats
// gozxing's general finder-pattern detector and needs the whole-pixel
// modules that make its pure-barcode path work.
func TestQRPNGDecodesEveryToken(t *testing.T) {
	signing := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := signing.Public().(ed25519.PublicKey)
	var indices []int
	for i := 0; i < 40; i++ {
		indices = append(indices, i)
	}
	indices = append(indices, 133, 184, 255)
	for _, i := range indices {
		cid := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("code-id-%08d", i)))
		claims := pickupcode.Claims{CodeID: cid, DeviceID: "kortrijk-hall-a", Expires: 1800000000 + int64(i)}
		token, err := pickupcode.SignToken(signing, claims)
		require.NoError(t, err)
		png, err := QRPNG(token)
		require.NoError(t, err)
		got := decodeQR(t, png)
		require.Equal(t, token, got, "token %d", i)
		_, err = pickupcode.VerifyToken(pub, got, "kortrijk-hall-a", time.Unix(1700000000, 0))
		require.NoError(t, err, "token %d", i)
	}
}
