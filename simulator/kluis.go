package simulator

import "fmt"

func newKluisResponder(dev *Device) (Responder, error) {
	return nil, fmt.Errorf("kluis protocol responder not available yet (waiting for hardware/kluisproto): %w", ErrBadInput)
}
