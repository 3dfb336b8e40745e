package shard

// Slot is the Redis Cluster hash slot of an Asynq queue's keys ("asynq:{<queue>}:…"): CRC16
// (XMODEM) of the queue name, which is the keys' hash tag, modulo 16384. Queue names hold no
// braces (the API's pattern forbids them), so the tag is the whole name.
func Slot(queue string) uint16 {
	return crc16(queue) % slots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
