package kluisproto

// CRC16 computes CRC-16/MODBUS: polynomial 0x8005 (0xA001 reflected), init
// 0xFFFF, input and output reflected, xorout 0x0000. Its check value, the
// CRC of the ASCII bytes "123456789", is 0x4B37.
func CRC16(p []byte) uint16 { return CRC16Update(0xFFFF, p) }

// CRC16Update continues a CRC-16/MODBUS computation started with 0xFFFF.
func CRC16Update(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
