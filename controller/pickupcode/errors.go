package pickupcode

import "errors"

// Sentinel errors of a verification, shared by the backend and the device.
// Map them to a kiosk-safe reason with [Reason].
var (
	// ErrInvalid means the input or configuration is unusable.
	ErrInvalid = errors.New("invalid input")
	// ErrWrongCode means no active code matches (also a bad signature, a
	// replaced code, or a wrong date of birth: the kiosk cannot tell them apart).
	ErrWrongCode = errors.New("wrong code")
	// ErrWrongDevice means a valid QR token for another device.
	ErrWrongDevice = errors.New("code is for another device")
	// ErrExpired means the code's validity has passed (also a code the
	// expire transition revoked; a code revoked before its expiry is wrong).
	ErrExpired = errors.New("code expired")
	// ErrAlreadyCollected means the code was used already.
	ErrAlreadyCollected = errors.New("already collected")
	// ErrCodeLocked means too many wrong dates of birth; the code needs a re-issue.
	ErrCodeLocked = errors.New("code locked")
	// ErrDeviceLockedOut means PIN entry is locked on the device for a while.
	ErrDeviceLockedOut = errors.New("device locked out for PIN entry")
	// ErrSecondFactorRequired means a PIN was given without the date of birth.
	ErrSecondFactorRequired = errors.New("date of birth required")
)

// Kiosk-safe reason strings, the values of the metrics' reason label.
const (
	ReasonOK                   = "ok"
	ReasonWrongCode            = "wrong_code"
	ReasonWrongDevice          = "wrong_device"
	ReasonExpired              = "expired"
	ReasonAlreadyCollected     = "already_collected"
	ReasonCodeLocked           = "code_locked"
	ReasonDeviceLockedOut      = "device_locked_out"
	ReasonSecondFactorRequired = "second_factor_required"
	ReasonInvalid              = "invalid"
	ReasonError                = "error"
)

// Reason maps a verification error to its kiosk-safe reason string ("ok"
// for nil).
func Reason(err error) string {
	switch {
	case err == nil:
		return ReasonOK
	case errors.Is(err, ErrDeviceLockedOut):
		return ReasonDeviceLockedOut
	case errors.Is(err, ErrSecondFactorRequired):
		return ReasonSecondFactorRequired
	case errors.Is(err, ErrCodeLocked):
		return ReasonCodeLocked
	case errors.Is(err, ErrAlreadyCollected):
		return ReasonAlreadyCollected
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrWrongDevice):
		return ReasonWrongDevice
	case errors.Is(err, ErrWrongCode):
		return ReasonWrongCode
	case errors.Is(err, ErrInvalid):
		return ReasonInvalid
	default:
		return ReasonError
	}
}
