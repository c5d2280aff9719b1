package ixgbeemu

// EEPROM image (datasheet §6, "Non-Volatile Memory Map"). The Linux driver
// validates it with ixgbe_validate_eeprom_checksum_generic, which calls
// ixgbe_calc_eeprom_checksum_generic:
//
//	sum words 0x00..0x3E;
//	for each pointer word 0x03..0x0E (IXGBE_PCIE_ANALOG_PTR..IXGBE_FW_PTR-1):
//	    skip if pointer is 0 or 0xFFFF; len = word[pointer]; skip if len is 0 or 0xFFFF;
//	    sum words pointer+1 .. pointer+len;
//	checksum = 0xBABA - sum, stored at word 0x3F.
//
// The model uses one pointed-to section (LAN core 0, pointer word 0x09,
// §6.3.x) holding the MAC address so the pointer path is exercised; every
// other pointer is 0xFFFF.
const (
	eepromWords       = 2048 // EEC.EE_SIZE = 5 → 1 << (5+6) words
	eepromSizeField   = 5
	eepromChecksumW   = 0x3F
	eepromSum         = 0xBABA
	eepromAnalogPtr   = 0x03
	eepromFWPtr       = 0x0F
	eepromLANCore0Ptr = 0x09
	eepromLANCore0    = 0x0100
	eepromPBA0        = 0x15
	eepromPBA1        = 0x16
	eepromDevCaps     = 0x2C
	eepromSANMACPtr   = 0x28
	eepromAltSANPtr   = 0x27
)

func buildEEPROM(mac [6]byte) []uint16 {
	e := make([]uint16, eepromWords)
	for i := range e {
		e[i] = 0xFFFF // erased flash
	}
	for i := 0; i < eepromChecksumW; i++ {
		e[i] = 0
	}
	e[0x00] = 0x0000 // EEPROM control word 1
	e[0x01] = 0x0000 // EEPROM control word 2
	for i := eepromAnalogPtr; i <= eepromFWPtr; i++ {
		e[i] = 0xFFFF // module pointers not present
	}
	e[eepromLANCore0Ptr] = eepromLANCore0
	e[eepromPBA0] = 0x1234 // legacy PBA number (not the 0xFAFA pointer guard)
	e[eepromPBA1] = 0x5678
	e[eepromAltSANPtr] = 0xFFFF
	e[eepromSANMACPtr] = 0xFFFF
	e[eepromDevCaps] = 0
	// LAN core 0 section: word 0 = section length, words 1..3 = MAC.
	e[eepromLANCore0] = 3
	for i := 0; i < 3; i++ {
		e[eepromLANCore0+1+i] = uint16(mac[2*i]) | uint16(mac[2*i+1])<<8
	}
	e[eepromChecksumW] = eepromSum - eepromCalcChecksum(e)
	return e
}

// eepromCalcChecksum mirrors ixgbe_calc_eeprom_checksum_generic without the
// final 0xBABA subtraction: it returns the sum of the covered words.
func eepromCalcChecksum(e []uint16) uint16 {
	var sum uint16
	for i := 0; i < eepromChecksumW; i++ {
		sum += e[i]
	}
	for i := eepromAnalogPtr; i < eepromFWPtr; i++ {
		p := int(e[i])
		if p == 0xFFFF || p == 0 || p >= len(e) {
			continue
		}
		l := int(e[p])
		if l == 0xFFFF || l == 0 {
			continue
		}
		for j := p + 1; j <= p+l && j < len(e); j++ {
			sum += e[j]
		}
	}
	return sum
}
